//! Tenants' render budgets: how many renders a tenant may have queued or running at once, and how
//! many it may start a minute, across every gateway and worker, so one tenant's warm-up or bot storm
//! cannot take the render capacity every tenant shares.
//!
//! `{prefix}{t:<tenant>}:budget:renders` is a sorted set of the tenant's renders (a page key, or a
//! page key with a `warm:` prefix), each scored by the time its place lapses by itself if nobody
//! gives it back (a crashed worker's renders do not hold the budget forever).
//! `{prefix}{t:<tenant>}:budget:minute:{n}` counts the renders admitted in minute `n` since the
//! epoch, and expires two minutes later. One script checks and takes a place, so concurrent gateways
//! and workers never admit more than the budget; the keys share the tenant's hash tag so that the
//! script may touch both on a Redis Cluster.

use crate::{Pages, Result};
use fred::prelude::*;
use kiln_core::UnixMillis;
use kiln_runtime::env::{VarError, Vars};
use std::time::Duration;

/// How many renders a tenant may have under way, and start a minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderBudget {
    /// Renders queued or running at once (0: no limit).
    pub concurrent: u32,
    /// Renders started in a minute (0: no limit).
    pub per_minute: u32,
}

impl RenderBudget {
    pub const DEFAULT: RenderBudget = RenderBudget {
        concurrent: 16,
        per_minute: 600,
    };

    /// Reads `KILN_TENANT_MAX_RENDERS` and `KILN_TENANT_RENDERS_PER_MINUTE` (unset: the defaults,
    /// 16 and 600; `0`: no limit).
    pub fn from_vars(vars: &Vars) -> Result<Self, VarError> {
        Ok(RenderBudget {
            concurrent: vars.number(
                "KILN_TENANT_MAX_RENDERS",
                Self::DEFAULT.concurrent,
                ..,
                "renders (0: no limit)",
            )?,
            per_minute: vars.number(
                "KILN_TENANT_RENDERS_PER_MINUTE",
                Self::DEFAULT.per_minute,
                ..,
                "renders a minute (0: no limit)",
            )?,
        })
    }

    /// Whether it limits anything at all.
    pub fn is_unlimited(&self) -> bool {
        self.concurrent == 0 && self.per_minute == 0
    }
}

/// Whether a render was given a place in its tenant's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The tenant has `concurrent` renders under way, or has started `per_minute` this minute: a
    /// place may be free again in `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

/// KEYS: the tenant's render set, the counter of this minute.
/// ARGV: the render, now (ms), when its place lapses (ms), concurrent, per minute, ms left of the
/// minute. Returns 0 when admitted (or already holding a place), else ms until a place may be free.
const LUA_ADMIT: &str = r#"
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 0
end
local concurrent = tonumber(ARGV[4])
if concurrent > 0 and redis.call('ZCARD', KEYS[1]) >= concurrent then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(first[2]) - now)
end
local per_minute = tonumber(ARGV[5])
if per_minute > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= per_minute then
  return math.max(1, tonumber(ARGV[6]))
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 120)
return 0
"#;

impl Pages {
    fn budget_set_key(&self, tenant_id: &str) -> String {
        self.conn.tenant_key(tenant_id, "budget:renders")
    }

    /// Takes a place in `tenant_id`'s render budget for `render` (a name unique to the render, such
    /// as its page key), held until [`Pages::release_render_place`] or `hold` from now at most.
    /// Taking a place the render already holds extends it, and is not counted again.
    pub async fn admit_render(
        &self,
        tenant_id: &str,
        render: &str,
        budget: RenderBudget,
        hold: Duration,
    ) -> Result<Admission> {
        if budget.is_unlimited() {
            return Ok(Admission::Admitted);
        }
        let now = kiln_core::unix_millis_now();
        let minute = now / 60_000;
        let left_of_minute = (minute + 1) * 60_000 - now;
        let lapses: UnixMillis = now + hold.as_millis() as u64;
        let keys = vec![
            self.budget_set_key(tenant_id),
            self.conn
                .tenant_key(tenant_id, &format!("budget:minute:{minute}")),
        ];
        let args: Vec<Value> = vec![
            render.into(),
            (now as i64).into(),
            (lapses as i64).into(),
            i64::from(budget.concurrent).into(),
            i64::from(budget.per_minute).into(),
            (left_of_minute as i64).into(),
        ];
        let wait_ms: i64 = self.conn.pool.eval(LUA_ADMIT, keys, args).await?;
        Ok(if wait_ms <= 0 {
            Admission::Admitted
        } else {
            Admission::Refused {
                retry_after: Duration::from_millis(wait_ms as u64),
            }
        })
    }

    /// Gives back `render`'s place in `tenant_id`'s budget (nothing if it holds none).
    pub async fn release_render_place(&self, tenant_id: &str, render: &str) -> Result<()> {
        let _: i64 = self
            .conn
            .pool
            .zrem(self.budget_set_key(tenant_id), render)
            .await?;
        Ok(())
    }

    /// How many renders `tenant_id` has under way (places not given back and not lapsed).
    pub async fn renders_under_way(&self, tenant_id: &str) -> Result<u64> {
        let now = kiln_core::unix_millis_now() as f64;
        Ok(self
            .conn
            .pool
            .zcount(self.budget_set_key(tenant_id), now, f64::INFINITY)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_read_from_its_variables() {
        let read = |vars: &[(&str, &str)]| {
            RenderBudget::from_vars(&Vars::new(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }))
        };
        assert_eq!(read(&[]).unwrap(), RenderBudget::DEFAULT);
        assert_eq!(
            read(&[
                ("KILN_TENANT_MAX_RENDERS", "4"),
                ("KILN_TENANT_RENDERS_PER_MINUTE", " 0 ")
            ])
            .unwrap(),
            RenderBudget {
                concurrent: 4,
                per_minute: 0
            }
        );
        assert!(
            read(&[
                ("KILN_TENANT_MAX_RENDERS", "0"),
                ("KILN_TENANT_RENDERS_PER_MINUTE", "0")
            ])
            .unwrap()
            .is_unlimited()
        );
        let error = read(&[("KILN_TENANT_MAX_RENDERS", "lots")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("KILN_TENANT_MAX_RENDERS `lots`"), "{error}");
    }
}
