//! The masking schemes the suite attacks: the weak ones docs/DESIGN.md §2 rules
//! out (and two crippled ReMO variants), and ReMO itself.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `X` as is.
    Plain,
    /// `Π·X`, a fresh row permutation per call.
    Permute,
    /// `A·X`, a fresh random invertible n × n mixing per call.
    Mix,
    /// `X + Z·B`: `B` a secret fixed orthonormal basis of rank d_in/4,
    /// `Z` fresh Gaussian noise (scale κ) per call.
    LowRank,
    /// `Π·(X + 1·rᵀ)`: one secret Gaussian pad (scale κ) drawn once and
    /// added to every row of the session, rows shuffled per call. Falls to
    /// a worker that knows one of its own rows (chosen plaintext).
    StaticPad,
    /// ReMO: `Π·(X + R)`, pads from batches sent as `M·R` with `rounds`
    /// butterfly rounds (3 = the protocol; 0 and 1 are weak variants).
    Remo { rounds: usize },
}

impl Scheme {
    pub fn name(self) -> String {
        match self {
            Self::Plain => "plain".into(),
            Self::Permute => "permute".into(),
            Self::Mix => "mix".into(),
            Self::LowRank => "lowrank".into(),
            Self::StaticPad => "static-pad".into(),
            Self::Remo { rounds: 0 } => "remo-nomix".into(),
            Self::Remo { rounds: 1 } => "remo-1round".into(),
            Self::Remo { rounds: 3 } => "remo".into(),
            Self::Remo { rounds } => format!("remo-{rounds}rounds"),
        }
    }

    /// Schemes the attacks must break (≥ 95 %) for the suite to mean anything.
    pub fn is_weak(self) -> bool {
        !matches!(self, Self::Remo { rounds } if rounds >= 3)
    }

    /// Whether κ changes what the scheme sends (swept for ReMO).
    pub fn uses_kappa(self) -> bool {
        matches!(self, Self::Remo { .. } | Self::LowRank | Self::StaticPad)
    }

    pub fn all_weak() -> [Scheme; 7] {
        [Self::Plain, Self::Permute, Self::Mix, Self::LowRank, Self::StaticPad, Self::Remo { rounds: 0 }, Self::Remo { rounds: 1 }]
    }

    pub const REMO: Scheme = Scheme::Remo { rounds: 3 };
}
