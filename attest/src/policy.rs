use serde::Deserialize;

/// What a verifier accepts: allow-lists of launch measurements and minimum
/// TCB per TEE kind (a JSON file, see docs), and whether simulated evidence
/// is tolerated (only from the `--allow-simulated` flag, never the file).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Policy {
    #[serde(skip)]
    pub allow_simulated: bool,
}

impl Policy {
    pub fn from_file(_path: &std::path::Path) -> Result<Self, String> {
        todo!("policy file")
    }
}
