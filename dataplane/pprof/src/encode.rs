//! Encoding a decoded [`Profile`] back to pprof bytes, for sending it to
//! another process (distributor → segment writer). Decoding the result
//! gives back an equal profile. And the other way without bytes: a
//! `google.v1.Profile` message built in process (JFR, OTLP) straight into
//! the columnar profile.

use phlox_proto::google::v1 as pb;
use prost::Message;

use crate::DecodeError;
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

    /// The columnar profile of a message built in this process (the JFR and
    /// OTLP converters build `google.v1.Profile`s): what decoding its
    /// encoding gives, without encoding it. `decoded_len` is its encoded
    /// length (computed, not encoded), which size limits apply to.
    pub fn from_proto(m: &pb::Profile) -> Result<Profile, DecodeError> {
        let mut p = Profile::default();
        p.decoded_len = m.encoded_len();
        let too_large = |_| DecodeError::TooLarge;
        let vt = |v: &pb::ValueType| crate::ValueType { r#type: v.r#type, unit: v.unit };
        p.sample_types = m.sample_type.iter().map(vt).collect();
        p.sample_locations.reserve(m.sample.len() + 1);
        p.sample_labels.reserve(m.sample.len() + 1);
        p.sample_locations.push(0);
        p.sample_labels.push(0);
        for s in &m.sample {
            p.location_ids.extend_from_slice(&s.location_id);
            p.values.extend_from_slice(&s.value);
            p.labels.extend(s.label.iter().map(|l| crate::Label {
                key: l.key,
                str: l.str,
                num: l.num,
                num_unit: l.num_unit,
            }));
            p.sample_locations.push(u32::try_from(p.location_ids.len()).map_err(too_large)?);
            p.sample_labels.push(u32::try_from(p.labels.len()).map_err(too_large)?);
        }
        p.mappings = m
            .mapping
            .iter()
            .map(|x| crate::Mapping {
                id: x.id,
                memory_start: x.memory_start,
                memory_limit: x.memory_limit,
                file_offset: x.file_offset,
                filename: x.filename,
                build_id: x.build_id,
                flags: u8::from(x.has_functions)
                    | u8::from(x.has_filenames) << 1
                    | u8::from(x.has_line_numbers) << 2
                    | u8::from(x.has_inline_frames) << 3,
            })
            .collect();
        p.locations.reserve(m.location.len());
        for l in &m.location {
            let start = u32::try_from(p.lines.len()).map_err(too_large)?;
            p.lines.extend(l.line.iter().map(|x| crate::Line { function_id: x.function_id, line: x.line }));
            let end = u32::try_from(p.lines.len()).map_err(too_large)?;
            p.locations.push(crate::Location {
                id: l.id,
                mapping_id: l.mapping_id,
                address: l.address,
                lines: start..end,
            });
        }
        p.functions = m
            .function
            .iter()
            .map(|f| crate::Function {
                id: f.id,
                name: f.name,
                system_name: f.system_name,
                filename: f.filename,
                start_line: f.start_line,
            })
            .collect();
        for s in &m.string_table {
            p.strings.push_str(s)?;
        }
        p.strings.start();
        p.drop_frames = m.drop_frames;
        p.keep_frames = m.keep_frames;
        p.time_nanos = m.time_nanos;
        p.duration_nanos = m.duration_nanos;
        p.period_type = m.period_type.as_ref().map(vt);
        p.period = m.period;
        p.comments = m.comment.clone();
        p.default_sample_type = m.default_sample_type;
        p.reindex();
        Ok(p)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A message using every field the columnar profile keeps.
    fn message() -> pb::Profile {
        let strings =
            ["", "samples", "count", "cpu", "nanoseconds", "main", "work", "main.go", "thread", "bytes", "/bin/app"];
        pb::Profile {
            sample_type: vec![pb::ValueType { r#type: 1, unit: 2 }, pb::ValueType { r#type: 3, unit: 4 }],
            sample: vec![
                pb::Sample {
                    location_id: vec![2, 1],
                    value: vec![3, 30_000_000],
                    label: vec![pb::Label { key: 8, str: 5, num: 0, num_unit: 0 }],
                },
                pb::Sample {
                    location_id: vec![1],
                    value: vec![1, 10_000_000],
                    label: vec![pb::Label { key: 9, str: 0, num: 512, num_unit: 9 }],
                },
            ],
            mapping: vec![pb::Mapping {
                id: 1,
                memory_start: 0x1000,
                memory_limit: 0x9000,
                file_offset: 0x10,
                filename: 10,
                build_id: 0,
                has_functions: true,
                has_filenames: false,
                has_line_numbers: true,
                has_inline_frames: true,
            }],
            location: vec![
                pb::Location {
                    id: 1,
                    mapping_id: 1,
                    address: 0x1100,
                    line: vec![pb::Line { function_id: 1, line: 3 }],
                    is_folded: false,
                },
                pb::Location {
                    id: 2,
                    mapping_id: 1,
                    address: 0x1200,
                    line: vec![pb::Line { function_id: 2, line: 9 }, pb::Line { function_id: 1, line: 4 }],
                    is_folded: false,
                },
            ],
            function: vec![
                pb::Function { id: 1, name: 5, system_name: 5, filename: 7, start_line: 1 },
                pb::Function { id: 2, name: 6, system_name: 6, filename: 7, start_line: 8 },
            ],
            string_table: strings.map(String::from).to_vec(),
            drop_frames: 0,
            keep_frames: 0,
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
            period_type: Some(pb::ValueType { r#type: 3, unit: 4 }),
            period: 10_000_000,
            comment: vec![6],
            default_sample_type: 1,
        }
    }

    #[test]
    fn a_message_converts_to_what_decoding_its_encoding_gives() {
        for m in [message(), pb::Profile::default()] {
            let bytes = m.encode_to_vec();
            let decoded = Profile::decode(&bytes).unwrap();
            let converted = Profile::from_proto(&m).unwrap();
            assert_eq!(format!("{converted:?}"), format!("{decoded:?}"));
            assert_eq!(converted.decoded_len, bytes.len());
        }
        // And the result reads as the message says.
        let p = Profile::from_proto(&message()).unwrap();
        p.validate().unwrap();
        assert_eq!(p.sample_count(), 2);
        assert_eq!(p.sample_location_ids(0), [2, 1]);
        assert_eq!(p.sample_value(1, 1), 10_000_000);
        assert_eq!(p.strings.str(p.functions[1].name), "work");
        assert_eq!(p.mappings[0].flags, 0b1101);
        assert_eq!(p.lines[p.locations[1].lines.start as usize..p.locations[1].lines.end as usize].len(), 2);
    }
}
