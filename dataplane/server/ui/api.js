// Phlox web UI: aPI client (see app.js for the modules).

import { RPC_BASE, isAbort } from './util.js';

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'ApiError';
    this.code = code || 'unknown';
    this.status = status || 0;
  }
}

export const api = {
  tenant: '',

  headers(contentType) {
    // The UI shows label names with dots too (OpenTelemetry's `service.name`…).
    const h = { 'Content-Type': contentType, Accept: '*/*;allow-utf8-labelnames=true' };
    if (this.tenant) h['X-Scope-OrgID'] = this.tenant;
    return h;
  },

  /** Calls a QuerierService method with the Connect JSON codec. */
  async call(method, body, signal) {
    let resp;
    try {
      resp = await fetch(RPC_BASE + method, {
        method: 'POST',
        headers: this.headers('application/json'),
        body: JSON.stringify(body || {}),
        signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(`${method}: request failed (${e && e.message ? e.message : e})`, 'unavailable');
    }
    const text = await resp.text();
    if (!resp.ok) throw connectError(method, resp.status, text);
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ApiError(`${method}: invalid JSON response`, 'internal', resp.status);
    }
  },

  /** Calls a method with the binary codec; returns the response bytes as a Blob. */
  async callBinary(method, bytes, signal) {
    let resp;
    try {
      resp = await fetch(RPC_BASE + method, {
        method: 'POST',
        headers: this.headers('application/proto'),
        body: bytes,
        signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(`${method}: request failed (${e && e.message ? e.message : e})`, 'unavailable');
    }
    if (!resp.ok) throw connectError(method, resp.status, await resp.text());
    return resp.blob();
  },
};

/** A Connect error body is `{"code","message"}`; anything else is reported raw. */
function connectError(method, status, text) {
  try {
    const j = JSON.parse(text);
    if (j && typeof j.message === 'string' && j.message) return new ApiError(j.message, j.code, status);
    if (j && j.code) return new ApiError(`${method}: ${j.code}`, j.code, status);
  } catch (e) { /* not JSON */ }
  const body = (text || '').trim().slice(0, 300);
  return new ApiError(`${method}: HTTP ${status}${body ? `: ${body}` : ''}`, 'unknown', status);
}

// Minimal protobuf writer for the pprof download request.

/** Appends an unsigned varint; `n` is a non-negative integer below 2^53. */
function pbVarint(out, n) {
  let v = Math.floor(n);
  while (v >= 128) {
    out.push((v % 128) + 128); // low 7 bits with the continuation bit
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function pbString(out, field, s) {
  if (!s) return; // proto3: default values are not written
  const bytes = new TextEncoder().encode(s);
  pbVarint(out, field * 8 + 2); // wire type 2: length-delimited
  pbVarint(out, bytes.length);
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]);
}

function pbInt64(out, field, n) {
  if (!n) return;
  pbVarint(out, field * 8); // wire type 0: varint
  pbVarint(out, n);
}

/**
 * querier.v1.SelectMergeProfileRequest: 1 profile_typeID, 2 label_selector,
 * 3 start, 4 end (Unix ms), 7 repeated profile_id_selector.
 */
export function encodeSelectMergeProfileRequest({ profileTypeID, labelSelector, start, end, profileIds }) {
  const out = [];
  pbString(out, 1, profileTypeID);
  pbString(out, 2, labelSelector);
  pbInt64(out, 3, start);
  pbInt64(out, 4, end);
  for (const id of profileIds || []) pbString(out, 7, id);
  return Uint8Array.from(out);
}
