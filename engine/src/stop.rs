//! Stop strings over streamed text: finds the first stop string and holds
//! back a tail that might still become one, so streamed text never includes
//! any part of a stop string. Each scan looks only at the text a new match
//! could touch (the new piece and `longest stop - 1` bytes before it), with
//! one KMP pass per stop string: the cost per token is bounded by the
//! stop strings' length, not by the length of the text generated so far.

#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<Stop>,
    /// Longest stop string, in bytes.
    max_len: usize,
}

#[derive(Clone, Debug)]
struct Stop {
    text: String,
    /// KMP failure function: `border[i]` is the length of the longest
    /// proper prefix of `text[..=i]` that is also a suffix of it.
    border: Vec<u32>,
}

impl Stop {
    fn new(text: String) -> Self {
        let b = text.as_bytes();
        let mut border = vec![0u32; b.len()];
        let mut k = 0usize;
        for i in 1..b.len() {
            while k > 0 && b[i] != b[k] {
                k = border[k - 1] as usize;
            }
            if b[i] == b[k] {
                k += 1;
            }
            border[i] = k as u32;
        }
        Self { text, border }
    }

    /// One pass over `window`: `Ok(start)` of the first match, else
    /// `Err(len)` of the longest proper prefix of the stop that `window`
    /// ends with (always at a character boundary: both are UTF-8).
    fn scan(&self, window: &[u8]) -> Result<usize, usize> {
        let s = self.text.as_bytes();
        let mut k = 0usize;
        for (i, &c) in window.iter().enumerate() {
            while k > 0 && c != s[k] {
                k = self.border[k - 1] as usize;
            }
            if c == s[k] {
                k += 1;
            }
            if k == s.len() {
                return Ok(i + 1 - k);
            }
        }
        Err(k)
    }
}

/// What may be emitted after appending text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopScan {
    /// Emit `text[..safe]`; keep the rest until more text arrives.
    Continue { safe: usize },
    /// A stop string starts at `at`: emit `text[..at]` and finish.
    Stop { at: usize },
}

impl StopStrings {
    pub fn new(stops: Vec<String>) -> Self {
        let stops: Vec<Stop> = stops.into_iter().filter(|s| !s.is_empty()).map(Stop::new).collect();
        let max_len = stops.iter().map(|s| s.text.len()).max().unwrap_or(0);
        Self { stops, max_len }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Scans `text` after `text[new_from..]` was appended. No stop string
    /// occurs in `text[..new_from]` (the previous scan would have stopped),
    /// so a match ends in the new part and starts at most `max_len - 1`
    /// bytes before it.
    pub fn scan(&self, text: &str, new_from: usize) -> StopScan {
        if self.stops.is_empty() {
            return StopScan::Continue { safe: text.len() };
        }
        let from = new_from.min(text.len()).saturating_sub(self.max_len - 1);
        let window = &text.as_bytes()[from..];
        let mut first: Option<usize> = None;
        let mut hold = 0;
        for s in &self.stops {
            match s.scan(window) {
                Ok(at) => first = Some(first.map_or(from + at, |f| f.min(from + at))),
                Err(k) => hold = hold.max(k),
            }
        }
        match first {
            Some(at) => StopScan::Stop { at },
            None => StopScan::Continue { safe: text.len() - hold },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_earliest_stop_and_holds_partial_matches() {
        let s = StopStrings::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(s.scan("hello EN", 0), StopScan::Continue { safe: 6 });
        assert_eq!(s.scan("hello\n", 0), StopScan::Continue { safe: 5 });
        assert_eq!(s.scan("a\n\nb END", 0), StopScan::Stop { at: 1 });
        assert_eq!(s.scan("plain", 0), StopScan::Continue { safe: 5 });
        assert_eq!(StopStrings::new(vec![]).scan("x", 0), StopScan::Continue { safe: 1 });
    }

    #[test]
    fn a_stop_split_across_pieces_is_found_from_the_new_piece() {
        let s = StopStrings::new(vec!["END".into()]);
        // "E" arrived earlier (held back), "ND" now.
        assert_eq!(s.scan("hello E", 6), StopScan::Continue { safe: 6 });
        assert_eq!(s.scan("hello END", 7), StopScan::Stop { at: 6 });
        let u = StopStrings::new(vec!["€€".into()]);
        assert_eq!(u.scan("a€", 1), StopScan::Continue { safe: 1 });
        assert_eq!(u.scan("a€€", 4), StopScan::Stop { at: 1 });
    }

    /// The same answers as scanning the whole text naively, piece by piece.
    #[test]
    fn agrees_with_a_naive_scan() {
        fn naive(stops: &[String], text: &str) -> StopScan {
            if let Some(at) = stops.iter().filter_map(|s| text.find(s.as_str())).min() {
                return StopScan::Stop { at };
            }
            let hold = stops
                .iter()
                .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
                .filter(|p| text.ends_with(p))
                .map(str::len)
                .max()
                .unwrap_or(0);
            StopScan::Continue { safe: text.len() - hold }
        }
        let pieces = ["a", "b", "ab", "é", "€", "ba", "aab", "\n"];
        let mut seed = 12345u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let stops: Vec<String> = (0..1 + rnd(4)).map(|_| (0..1 + rnd(5)).map(|_| pieces[rnd(pieces.len())]).collect()).collect();
            let s = StopStrings::new(stops.clone());
            let mut text = String::new();
            for _ in 0..30 {
                let before = text.len();
                text.push_str(pieces[rnd(pieces.len())]);
                let got = s.scan(&text, before);
                assert_eq!(got, naive(&stops, &text), "stops {stops:?}, text {text:?}");
                if matches!(got, StopScan::Stop { .. }) {
                    break;
                }
            }
        }
    }
}
