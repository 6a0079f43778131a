//! An answer that is costly to work out, kept for a while: a crowd of requests for the status
//! costs one walk over every flow a second, not one each.

/// The last answer and when it was worked out (ms on the caller's clock).
#[derive(Debug)]
pub struct Recent<T> {
    max_age_ms: u64,
    last: Option<(u64, T)>,
}

impl<T: Clone> Recent<T> {
    /// Keeps an answer for `max_age_ms`.
    pub fn new(max_age_ms: u64) -> Recent<T> {
        Recent {
            max_age_ms,
            last: None,
        }
    }

    /// The answer at `now_ms`: the kept one if it is younger than the age, else a new one from
    /// `work_out`, kept from now. A clock that went back counts as too old.
    pub fn get(&mut self, now_ms: u64, work_out: impl FnOnce() -> T) -> T {
        match &self.last {
            Some((at, answer)) if *at <= now_ms && now_ms - at < self.max_age_ms => answer.clone(),
            _ => {
                let answer = work_out();
                self.last = Some((now_ms, answer.clone()));
                answer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_a_second_however_many_ask_and_then_the_new_one() {
        let mut recent = Recent::new(1000);
        let walks = std::cell::Cell::new(0);
        let mut table = vec![(1, 10)];
        let ask = |recent: &mut Recent<Vec<(u32, u64)>>, now, table: &Vec<(u32, u64)>| {
            recent.get(now, || {
                walks.set(walks.get() + 1);
                table.clone()
            })
        };
        for now in 0..1000 {
            assert_eq!(ask(&mut recent, now, &table), [(1, 10)]);
        }
        // the table changed: the answer a second old at most says so
        table.push((2, 20));
        assert_eq!(ask(&mut recent, 999, &table), [(1, 10)]);
        assert_eq!(ask(&mut recent, 1000, &table), [(1, 10), (2, 20)]);
        assert_eq!(ask(&mut recent, 1500, &table), [(1, 10), (2, 20)]);
        // a clock that went back does not keep an answer for ever
        table.clear();
        assert_eq!(ask(&mut recent, 10, &table), []);
        assert_eq!(walks.get(), 3);
    }
}
