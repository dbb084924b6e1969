//! Stop strings over streamed text: finds the first stop string and holds
//! back a tail that might still become one, so streamed text never includes
//! any part of a stop string.

#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
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
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Scans the whole generated text so far.
    pub fn scan(&self, text: &str) -> StopScan {
        if let Some(at) = self.stops.iter().filter_map(|s| text.find(s.as_str())).min() {
            return StopScan::Stop { at };
        }
        // Longest suffix of `text` that is a proper prefix of some stop.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if text.ends_with(&s[..i]) {
                    hold = hold.max(i);
                }
            }
        }
        StopScan::Continue { safe: text.len() - hold }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_earliest_stop_and_holds_partial_matches() {
        let s = StopStrings::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(s.scan("hello EN"), StopScan::Continue { safe: 6 });
        assert_eq!(s.scan("hello\n"), StopScan::Continue { safe: 5 });
        assert_eq!(s.scan("a\n\nb END"), StopScan::Stop { at: 1 });
        assert_eq!(s.scan("plain"), StopScan::Continue { safe: 5 });
        assert_eq!(StopStrings::new(vec![]).scan("x"), StopScan::Continue { safe: 1 });
    }
}
