use std::fmt;

/// A profile type id: `name:sample_type:sample_unit:period_type:period_unit`,
/// e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileType {
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a profile type id: expected name:sample_type:sample_unit:period_type:period_unit, \
     e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds (GET /pyroscope/label-values?label=__name__ lists the stored ones)"
)]
pub struct ProfileTypeError(pub String);

impl ProfileType {
    /// Parses the 5-part form (a 6th part, as Pyroscope tolerates, is ignored).
    pub fn parse(id: &str) -> Result<Self, ProfileTypeError> {
        let parts: Vec<&str> = id.split(':').collect();
        if !(parts.len() == 5 || parts.len() == 6) || parts[0].is_empty() {
            return Err(ProfileTypeError(id.to_owned()));
        }
        Ok(Self {
            name: parts[0].to_owned(),
            sample_type: parts[1].to_owned(),
            sample_unit: parts[2].to_owned(),
            period_type: parts[3].to_owned(),
            period_unit: parts[4].to_owned(),
        })
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}:{}", self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_type_ids_round_trip() {
        let id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        let t = ProfileType::parse(id).unwrap();
        assert_eq!(t.sample_unit, "nanoseconds");
        assert_eq!(t.to_string(), id);
        assert!(ProfileType::parse("memory:alloc_space:bytes").is_err());
        assert!(ProfileType::parse(":a:b:c:d").is_err());
        assert_eq!(ProfileType::parse("memory:a:b::").unwrap().to_string(), "memory:a:b::");
    }
}
