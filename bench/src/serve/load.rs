//! One benchmark run: requests arrive at a Poisson (or fixed) rate, or all
//! at once, and at most `concurrency` are in flight; each is a thread
//! with a blocking streamed request.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use talaria_models::progress::{Progress, Unit};

use super::client::{self, RequestResult, RequestSpec};
use super::dataset::Prompt;
use super::Args;

/// Seconds after the start at which each request arrives.
pub fn arrival_times(n: usize, rate: f64, fixed: bool, seed: u64) -> Vec<f64> {
    if !rate.is_finite() {
        return vec![0.0; n];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let exp = Exp::new(rate).expect("rate > 0");
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += if fixed { 1.0 / rate } else { exp.sample(&mut rng) };
            }
            t
        })
        .collect()
}

/// A counting semaphore for the concurrency cap.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    fn acquire(&self) {
        let mut f = self.free.lock().expect("slots");
        while *f == 0 {
            f = self.cv.wait(f).expect("slots");
        }
        *f -= 1;
    }

    fn release(&self) {
        *self.free.lock().expect("slots") += 1;
        self.cv.notify_one();
    }
}

pub fn run(a: &Args, base: &str, model: &str, prompts: &[Prompt], concurrency: Option<usize>) -> anyhow::Result<Vec<RequestResult>> {
    let spec = RequestSpec { base, model, chat: a.endpoint == "chat", temperature: a.temperature, ignore_eos: a.ignore_eos };
    let agent = client::agent();
    let arrivals = arrival_times(prompts.len(), a.request_rate, a.fixed_rate, a.seed);
    let slots = Slots { free: Mutex::new(concurrency.unwrap_or(usize::MAX)), cv: Condvar::new() };
    let results = Mutex::new(Vec::with_capacity(prompts.len()));
    let progress = Progress::new("requests", prompts.len() as u64, Unit::Items("requests"));
    let start = Instant::now();
    std::thread::scope(|sc| {
        for (p, &at) in prompts.iter().zip(&arrivals) {
            let wait = at - start.elapsed().as_secs_f64();
            if wait > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(wait));
            }
            slots.acquire();
            let (spec, agent, slots, results, progress) = (&spec, &agent, &slots, &results, &progress);
            sc.spawn(move || {
                let r = client::send(agent, spec, p, start.elapsed().as_secs_f64());
                slots.release();
                results.lock().expect("results").push(r);
                progress.inc(1);
            });
        }
    });
    Ok(results.into_inner().expect("results"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_rate() {
        assert_eq!(arrival_times(3, f64::INFINITY, false, 0), vec![0.0; 3]);
        let fixed = arrival_times(5, 2.0, true, 0);
        assert!((fixed[4] - 2.0).abs() < 1e-9);
        let poisson = arrival_times(4001, 10.0, false, 7);
        assert!(poisson.windows(2).all(|w| w[1] >= w[0]));
        // 4000 gaps of mean 0.1 s: about 400 s.
        assert!((poisson[4000] - 400.0).abs() < 40.0, "{}", poisson[4000]);
        assert_eq!(poisson, arrival_times(4001, 10.0, false, 7));
    }
}
