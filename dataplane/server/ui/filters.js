// Phlox web UI: label filters (see app.js for the modules).

import {
  FILTER_OPS, FILTER_OP_TITLES, escapeRegex, filterText, isAbort, isRegexOp, normalizeOp,
  sameFilter,
} from './util.js';
import { api } from './api.js';

/**
 * A label name select, an operator select, a value select (values filtered
 * by the current selector minus this label) or, for the regex operators, a
 * free-text input (the values offered as suggestions), an add button and
 * removable chips. Several filters may name one label (they are AND-ed);
 * the values offered for a label ignore all of that label's own filters, so
 * `pod!="a"` still offers `b` for a second `pod!="b"`. Each chip removes
 * only its own filter.
 */
export class FilterPicker {
  constructor({
    nameSelect, opSelect, valueSelect, regexInput, addButton, chips, chipTestId, onChange, selectorWithout, onError,
  }) {
    this.nameSelect = nameSelect;
    this.opSelect = opSelect;
    this.valueSelect = valueSelect;
    this.regexInput = regexInput;
    this.addButton = addButton;
    this.chips = chips;
    this.chipTestId = chipTestId;
    this.onChange = onChange;
    this.selectorWithout = selectorWithout; // (labelName) => selector string
    this.onError = onError;
    this.filters = [];
    this.range = null;
    this.ready = false; // whether the pickers may call the API (type known)
    this.valuesReq = 0;
    this.namesReq = 0;
    setOptions(nameSelect, [], 'label…');
    setOptions(opSelect, FILTER_OPS.map((op) => ({ value: op, label: op, title: FILTER_OP_TITLES[op] })));
    setOptions(valueSelect, [], 'value…');
    // The regex input suggests the label's values through a datalist.
    this.suggestions = document.createElement('datalist');
    this.suggestions.id = `label-suggestions-${++FilterPicker.count}`;
    regexInput.after(this.suggestions);
    regexInput.setAttribute('list', this.suggestions.id);
    nameSelect.addEventListener('change', () => this.loadValues());
    opSelect.addEventListener('change', () => this.syncOp());
    regexInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.add(); });
    addButton.addEventListener('click', () => this.add());
    this.syncOp();
  }

  /** Shows the value select or the regex input, as the operator needs. */
  syncOp() {
    const regex = isRegexOp(this.opSelect.value);
    this.opSelect.title = FILTER_OP_TITLES[this.opSelect.value] || '';
    // Switching to a regex seeds it with the chosen value, matched literally.
    if (regex && !this.regexInput.value && this.valueSelect.value) {
      this.regexInput.value = escapeRegex(this.valueSelect.value);
    }
    this.valueSelect.hidden = regex;
    this.regexInput.hidden = !regex;
    this.regexInput.disabled = !this.nameSelect.value;
  }

  setFilters(filters) {
    this.filters = filters.slice();
    this.renderChips();
  }

  renderChips() {
    this.chips.textContent = '';
    this.filters.forEach((f, idx) => {
      const chip = document.createElement('span');
      chip.className = 'chip';
      if (this.chipTestId) chip.dataset.testid = this.chipTestId;
      const text = document.createElement('span');
      text.textContent = filterText(f);
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.className = 'chip-remove'; // the × is drawn by CSS, so the chip's text is just the matcher
      rm.title = `Remove ${filterText(f)}`;
      rm.setAttribute('aria-label', `Remove filter ${filterText(f)}`);
      rm.addEventListener('click', () => {
        const next = this.filters.slice();
        next.splice(idx, 1);
        this.onChange(next);
      });
      chip.append(text, rm);
      this.chips.appendChild(chip);
    });
  }

  async loadNames(range, signal) {
    this.range = range;
    const req = ++this.namesReq;
    const selected = this.nameSelect.value;
    try {
      const resp = await api.call('LabelNames', {
        matchers: [this.selectorWithout(null)], start: range.start, end: range.end,
      }, signal);
      if (req !== this.namesReq) return;
      const names = (resp.names || []).filter((n) => n && !n.startsWith('__') && n !== 'service_name');
      names.sort();
      setOptions(this.nameSelect, names, 'label…', selected);
      if (this.nameSelect.value !== selected || !selected) {
        this.setValues([]);
        this.valueSelect.disabled = true;
        this.syncOp();
      } else {
        await this.loadValues(signal);
      }
    } catch (e) {
      if (!isAbort(e) && this.onError) this.onError(e);
    }
  }

  setValues(values, selected) {
    setOptions(this.valueSelect, values, 'value…', selected);
    setOptions(this.suggestions, values);
  }

  async loadValues(signal) {
    const name = this.nameSelect.value;
    const req = ++this.valuesReq;
    const selected = this.valueSelect.value;
    this.syncOp();
    if (!name || !this.range) {
      this.setValues([]);
      this.valueSelect.disabled = true;
      return;
    }
    this.valueSelect.disabled = true;
    try {
      const resp = await api.call('LabelValues', {
        name, matchers: [this.selectorWithout(name)], start: this.range.start, end: this.range.end,
      }, signal);
      if (req !== this.valuesReq) return;
      const values = (resp.names || []).slice().sort();
      this.setValues(values, selected);
      // Preselect the single value so "Add" works right away.
      if (values.length === 1) this.valueSelect.value = values[0];
      this.valueSelect.disabled = false;
    } catch (e) {
      if (!isAbort(e) && this.onError) this.onError(e);
    }
  }

  add() {
    const name = this.nameSelect.value;
    const op = normalizeOp(this.opSelect.value);
    if (!name) return;
    let value;
    if (isRegexOp(op)) {
      // An empty regex is meaningful (`!~""`: the label is set), so allowed.
      value = this.regexInput.value;
    } else {
      value = this.valueSelect.value;
      if (!value || this.valueSelect.disabled) return;
    }
    // Filters on one label combine (AND); an exact repeat changes nothing.
    const f = { name, op, value };
    if (this.filters.some((g) => sameFilter(g, f))) return;
    this.onChange(this.filters.concat([f]));
  }
}
FilterPicker.count = 0;

/** Replaces a select's options with a placeholder plus `values`. */
export function setOptions(select, values, placeholder, selected) {
  select.textContent = '';
  if (placeholder != null) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = placeholder;
    select.appendChild(o);
  }
  for (const v of values) {
    const o = document.createElement('option');
    if (typeof v === 'object') {
      o.value = v.value;
      o.textContent = v.label;
      if (v.title) o.title = v.title;
    } else {
      o.value = v;
      o.textContent = v;
    }
    select.appendChild(o);
  }
  if (selected != null && values.some((v) => (typeof v === 'object' ? v.value : v) === selected)) {
    select.value = selected;
  }
}
