//! The weight-dependent linear ops of a Llama layer, as outsourced to the
//! worker. Each is one matrix after fusing (q|k|v, gate|up); the matrices
//! stay as stored, so the norm gains are applied by the CVM, not folded in.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `self_attn.{q,k,v}_proj` fused.
    Qkv,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.{gate,up}_proj` fused.
    GateUp,
    /// `mlp.down_proj`.
    Down,
    /// Untied `lm_head` (layer -1 on the wire).
    LmHead,
}

impl Op {
    pub const LAYER_OPS: [Op; 4] = [Op::Qkv, Op::O, Op::GateUp, Op::Down];

    pub fn name(self) -> &'static str {
        match self {
            Op::Qkv => "qkv",
            Op::O => "o",
            Op::GateUp => "gate_up",
            Op::Down => "down",
            Op::LmHead => "lm_head",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Self> {
        [Op::Qkv, Op::O, Op::GateUp, Op::Down, Op::LmHead].get(c as usize).copied()
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Op::Qkv, Op::O, Op::GateUp, Op::Down, Op::LmHead].into_iter().find(|o| o.name() == s)
    }
}

/// One linear of the model: `layer` is -1 for the LM head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId {
    pub layer: i32,
    pub op: Op,
}

impl OpId {
    pub fn new(layer: usize, op: Op) -> Self {
        Self { layer: layer as i32, op }
    }
    pub fn lm_head() -> Self {
        Self { layer: -1, op: Op::LmHead }
    }
}

impl std::fmt::Display for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {} {}", self.layer, self.op.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn codes_round_trip() {
        for op in [Op::Qkv, Op::O, Op::GateUp, Op::Down, Op::LmHead] {
            assert_eq!(Op::from_code(op.code()), Some(op));
            assert_eq!(Op::parse(op.name()), Some(op));
        }
        assert_eq!(Op::from_code(5), None);
    }
}
