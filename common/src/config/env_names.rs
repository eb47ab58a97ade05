//! Which `WALSHIP_*` environment variables walship knows, and the nearest known name of one
//! it does not (a misspelt `WALSHIP_S3_ENDPONT` would otherwise be ignored in silence).
//!
//! Known are the variables of the key table, `WALSHIP_CONFIG`, and the few that walship's own
//! tooling reads but the binary does not (the docker images, the compose file, the test
//! harness): those are neither settings nor typos.

use super::keys::KEYS;

/// Names under `WALSHIP_` that are not settings of the binary but belong to walship's own
/// tooling (documented with it): the binary neither warns about them nor carries them.
const TOOLING: &[&str] = &[
    // docker/postgres/entrypoint
    "WALSHIP_ARCHIVE_MODE",
    // docker/compose.yaml, docker/e2e, docker/build-images
    "WALSHIP_PG_PORT",
    "WALSHIP_RESTORED_PG_PORT",
    "WALSHIP_S3_PORT",
    "WALSHIP_METRICS_PORT",
    "WALSHIP_S3_BUCKET",
    "WALSHIP_IMAGE",
    "WALSHIP_PG_IMAGE",
    "WALSHIP_S3_IMAGE",
    "WALSHIP_E2E_KEEP",
    "WALSHIP_E2E_PROJECT",
    // pg-test-harness, scripts/setup-test-deps
    "WALSHIP_TEST_DEPS",
    "WALSHIP_PG_MAJORS",
    "WALSHIP_SEAWEEDFS_VERSION",
    "WALSHIP_REFRESH_DEPS",
    "WALSHIP_SKIP_APT",
];

/// A `WALSHIP_*` variable that is set but that walship does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEnvVar {
    /// The variable as set.
    pub name: String,
    /// The known setting variable nearest to it (by edit distance).
    pub nearest: &'static str,
    /// Whether `nearest` is close enough to be the intended name (a likely typo).
    pub likely_typo: bool,
}

impl std::fmt::Display for UnknownEnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            name,
            nearest,
            likely_typo,
        } = self;
        if *likely_typo {
            write!(
                f,
                "environment variable {name} is not a walship setting and is ignored; did you mean {nearest}?"
            )
        } else {
            write!(
                f,
                "environment variable {name} is not a walship setting and is ignored (the nearest is {nearest})"
            )
        }
    }
}

/// The environment variables of walship's settings (`WALSHIP_REPO`, `WALSHIP_S3_ENDPOINT`,
/// ...), without `WALSHIP_CONFIG`. None of them holds a secret.
pub fn setting_env_vars() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.env)
}

/// Whether walship, or its own tooling, reads `name`.
pub fn is_known(name: &str) -> bool {
    name == "WALSHIP_CONFIG" || TOOLING.contains(&name) || setting_env_vars().any(|k| k == name)
}

/// `name` as an unknown variable with its nearest known setting, or `None` when walship
/// knows it or it does not start with `WALSHIP_`.
pub fn unknown(name: &str) -> Option<UnknownEnvVar> {
    if !name.starts_with("WALSHIP_") || is_known(name) {
        return None;
    }
    let (nearest, distance) = setting_env_vars()
        .chain(["WALSHIP_CONFIG"])
        .map(|known| (known, edit_distance(name, known)))
        .min_by_key(|(_, d)| *d)?;
    // A typo changes a few letters; a different word changes most of the suffix.
    let suffix = name.len().saturating_sub("WALSHIP_".len());
    Some(UnknownEnvVar {
        name: name.to_string(),
        nearest,
        likely_typo: distance <= 3.min(suffix.div_ceil(2)).max(1),
    })
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn typos_name_the_intended_variable() {
        let u = unknown("WALSHIP_S3_ENDPONT").unwrap();
        assert_eq!(u.nearest, "WALSHIP_S3_ENDPOINT");
        assert!(u.likely_typo);
        assert_eq!(unknown("WALSHIP_REPOO").unwrap().nearest, "WALSHIP_REPO");
        assert_eq!(
            unknown("WALSHIP_FETCH_PREFECH").unwrap().nearest,
            "WALSHIP_FETCH_PREFETCH"
        );
        let far = unknown("WALSHIP_PASSWORD").unwrap();
        assert!(!far.likely_typo, "{far}");
        assert!(unknown("WALSHIP_S3_ENDPOINT").is_none());
        assert!(unknown("WALSHIP_CONFIG").is_none());
        assert!(unknown("WALSHIP_ARCHIVE_MODE").is_none());
        assert!(unknown("PGHOST").is_none());
    }
}
