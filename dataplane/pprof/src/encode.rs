//! Encoding a decoded [`Profile`] back to pprof bytes, for sending it to
//! another process (distributor → segment writer). Decoding the result
//! gives back an equal profile.

use phlox_proto::google::v1 as pb;
use prost::Message;

use crate::profile::Profile;

impl Profile {
    /// The profile as a `google.v1.Profile` message.
    pub fn to_proto(&self) -> pb::Profile {
        let vt = |v: &crate::ValueType| pb::ValueType { r#type: v.r#type, unit: v.unit };
        let types = self.sample_types.len();
        let sample = (0..self.sample_count())
            .map(|i| pb::Sample {
                location_id: self.sample_location_ids(i).to_vec(),
                value: (0..types).map(|t| self.sample_value(i, t)).collect(),
                label: self
                    .sample_labels(i)
                    .iter()
                    .map(|l| pb::Label { key: l.key, str: l.str, num: l.num, num_unit: l.num_unit })
                    .collect(),
            })
            .collect();
        pb::Profile {
            sample_type: self.sample_types.iter().map(vt).collect(),
            sample,
            mapping: self
                .mappings
                .iter()
                .map(|m| pb::Mapping {
                    id: m.id,
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: m.filename,
                    build_id: m.build_id,
                    has_functions: m.flags & 1 != 0,
                    has_filenames: m.flags & 2 != 0,
                    has_line_numbers: m.flags & 4 != 0,
                    has_inline_frames: m.flags & 8 != 0,
                })
                .collect(),
            location: self
                .locations
                .iter()
                .map(|l| pb::Location {
                    id: l.id,
                    mapping_id: l.mapping_id,
                    address: l.address,
                    line: self
                        .lines
                        .get(l.lines.start as usize..l.lines.end as usize)
                        .unwrap_or_default()
                        .iter()
                        .map(|x| pb::Line { function_id: x.function_id, line: x.line })
                        .collect(),
                    is_folded: false,
                })
                .collect(),
            function: self
                .functions
                .iter()
                .map(|f| pb::Function {
                    id: f.id,
                    name: f.name,
                    system_name: f.system_name,
                    filename: f.filename,
                    start_line: f.start_line,
                })
                .collect(),
            string_table: (0..self.strings.len() as i64).map(|i| self.strings.str(i).to_owned()).collect(),
            drop_frames: self.drop_frames,
            keep_frames: self.keep_frames,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: self.period_type.as_ref().map(vt),
            period: self.period,
            comment: self.comments.clone(),
            default_sample_type: self.default_sample_type,
        }
    }

    /// The profile as pprof bytes (uncompressed).
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// [`encode`](Self::encode), computed once per profile: a profile whose
    /// series go to several segment writers is encoded once, not per push.
    /// Meant for shared (`Arc`) profiles, which are no longer changed.
    pub fn encoded(&self) -> bytes::Bytes {
        self.encoded.0.get_or_init(|| bytes::Bytes::from(self.encode())).clone()
    }
}
