//! The people commands at the terminal (enrol, revoke, block a user) and the visitor passes
//! sensor: which passes are valid now (pure) and when that next changes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::people::{PeopleJob, BLACKLIST, VISITOR};
use super::{response_with, terminal_failure, Cmd, Executor};
use crate::integrations::terminal::model::{lenient_i64, User};
use crate::integrations::terminal::{TerminalClient, TerminalError, UserQuery};
use crate::messages::{topics, Outbound};
use crate::pipeline::record::rfc3339;

/// The passes the sensor lists by name (a few hundred bytes each against the 512 KiB packet).
const MAX_LISTED: usize = 200;

/// After a failed read of the visitors, the next try.
const RETRY: Duration = Duration::from_secs(60);

impl Executor {
    /// Runs a people job and answers it; `true` when it all happened.
    pub(super) async fn people(&self, cmd: Cmd, job: PeopleJob, transaction: Option<&str>) -> bool {
        let terminal = &self.responder.terminal;
        let result = run(&self.client, job).await;
        let mut extra = Map::new();
        let answer = match &result {
            Ok(done) => {
                // The user id, never the name: names of people stay out of the log.
                tracing::info!(terminal = %terminal, command = cmd.as_str(), user_id = %done.user_id, opened = done.opened, "{} done", cmd.as_str());
                extra.insert("user_id".into(), json!(done.user_id));
                if done.opened {
                    extra.insert("opened".into(), json!(true));
                }
                Ok(())
            }
            Err(failed) => {
                let (text, code, reason) = match failed {
                    Failed::Terminal(e) => terminal_failure(e),
                    Failed::NoUser(id) => {
                        (format!("the terminal has no user `{id}`"), None, "no_user")
                    }
                    Failed::NotAVisitor(id) => (
                        format!("`{id}` is not a visitor: revoke removes visitor passes only"),
                        None,
                        "not_a_visitor",
                    ),
                    Failed::NotOpened(id, e) => {
                        extra.insert("user_id".into(), json!(id));
                        extra.insert("opened".into(), json!(false));
                        let (text, code, reason) = terminal_failure(e);
                        (
                            format!("enrolled as `{id}`, but the door did not open: {text}"),
                            code,
                            reason,
                        )
                    }
                };
                tracing::warn!(terminal = %terminal, command = cmd.as_str(), code = code.unwrap_or(0), "{} failed: {text}", cmd.as_str());
                Err((text, code, reason))
            }
        };
        self.responder
            .send(cmd.as_str(), response_with(answer, extra, transaction))
            .await;
        result.is_ok()
    }

    /// Reads the terminal's visitors and publishes the sensor's state; returns when to read
    /// again: at the next pass that starts or ends, or after `every` (`people.refresh`).
    pub(super) async fn read_visitors(&self, every: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let later = |d: Duration| now + d;
        let users = match self.client.all_users(Some(VISITOR)).await {
            Ok(u) => u,
            Err(e) => {
                // The record link says loudly when the terminal is away; this says it quietly.
                tracing::debug!(terminal = %self.responder.terminal, "cannot read the visitor passes: {e}");
                return later(if every.is_zero() {
                    RETRY
                } else {
                    every.min(RETRY)
                });
            }
        };
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (state, change) = visitors_state(&users, wall);
        let message = Outbound::State {
            topic: topics::visitors(&self.responder.base, &self.responder.terminal),
            payload: state.to_string().into_bytes(),
        };
        // Fails only after the session ended (shutdown).
        let _ = self.responder.out.send(message).await;
        let at_change = change.map(|c| later(Duration::from_secs(c.saturating_sub(wall))));
        let periodic = (!every.is_zero()).then(|| later(every));
        // Nothing will change by itself: read again after the next people command.
        at_change
            .into_iter()
            .chain(periodic)
            .min()
            .unwrap_or_else(|| later(Duration::from_secs(365 * 86_400)))
    }
}

/// What a people job did: the user it is about, and whether the door opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub user_id: String,
    pub opened: bool,
}

/// Why a people job did not (wholly) happen.
#[derive(Debug)]
pub enum Failed {
    Terminal(TerminalError),
    /// The terminal has no user by that id.
    NoUser(String),
    /// Revoke removes visitor passes only.
    NotAVisitor(String),
    /// The user was enrolled, but the door did not open.
    NotOpened(String, TerminalError),
}

impl From<TerminalError> for Failed {
    fn from(e: TerminalError) -> Self {
        Failed::Terminal(e)
    }
}

/// Runs one people job at the terminal.
pub async fn run(client: &TerminalClient, job: PeopleJob) -> Result<Done, Failed> {
    match job {
        PeopleJob::Enrol { user, open } => {
            let user_id = user.user_id.clone();
            // The terminal refuses to add an id it has (30001): the same admit or pass sent
            // again changes that user instead.
            match find(client, &user_id).await? {
                Some(_) => client.update_user(&user).await?,
                None => client.add_user(&user).await?,
            };
            if open {
                let remark = match user.user_type {
                    VISITOR => "admitted visitor",
                    _ => "face2mqtt",
                };
                if let Err(e) = client.open(Some(remark)).await {
                    return Err(Failed::NotOpened(user_id, e));
                }
            }
            Ok(Done {
                user_id,
                opened: open,
            })
        }
        PeopleJob::Revoke { user_id } => match find(client, &user_id).await? {
            None => Err(Failed::NoUser(user_id)),
            Some(u) if u.user_type != VISITOR => Err(Failed::NotAVisitor(user_id)),
            Some(_) => {
                client.delete_user(&user_id).await?;
                Ok(Done {
                    user_id,
                    opened: false,
                })
            }
        },
        PeopleJob::BlockUser { user_id, name } => {
            let Some(mut user) = find(client, &user_id).await? else {
                return Err(Failed::NoUser(user_id));
            };
            user.user_type = BLACKLIST;
            if let Some(n) = name {
                user.name = n;
            }
            // The photo stays as the terminal has it: an update without one keeps it.
            user.photo = None;
            client.update_user(&user).await?;
            Ok(Done {
                user_id,
                opened: false,
            })
        }
    }
}

async fn find(client: &TerminalClient, user_id: &str) -> Result<Option<User>, TerminalError> {
    let q = UserQuery {
        user_id: Some(user_id.to_string()),
        page: 1,
        size: 10,
        ..UserQuery::default()
    };
    let page = client.list_users(&q).await?;
    Ok(page.items.into_iter().find(|u| u.user_id == user_id))
}

/// A user's window bound (Unix seconds); 0 or absent is no bound.
fn bound(user: &User, key: &str) -> Option<u64> {
    user.extra
        .get(key)
        .and_then(lenient_i64)
        .filter(|s| *s > 0)
        .and_then(|s| u64::try_from(s).ok())
}

/// The visitors sensor's payload at `now` (Unix seconds): how many visitor passes are valid,
/// with their names and windows, and the next moment that changes (a pass starts or ends).
pub fn visitors_state(users: &[User], now: u64) -> (Value, Option<u64>) {
    let mut passes = Vec::new();
    let mut count = 0usize;
    let mut next: Option<u64> = None;
    let mut soonest = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
    for u in users.iter().filter(|u| u.user_type == VISITOR) {
        let (start, end) = (bound(u, "startTime"), bound(u, "endTime"));
        if let Some(s) = start.filter(|s| *s > now) {
            soonest(s);
        }
        if let Some(e) = end.filter(|e| *e >= now) {
            soonest(e.saturating_add(1));
        }
        let valid = start.is_none_or(|s| now >= s) && end.is_none_or(|e| now <= e);
        if valid {
            count += 1;
            // The terminal's roster is outside input: the retained state must stay one MQTT
            // packet whatever it holds, so only the first passes are listed (all are counted).
            if passes.len() < MAX_LISTED {
                // `rfc3339` clamps a hostile endTime to the formatter's year 9999.
                let time = |t: Option<u64>| t.map(rfc3339);
                passes.push(json!({
                    "user_id": u.user_id,
                    "name": u.name,
                    "from": time(start),
                    "until": time(end),
                }));
            }
        }
    }
    let state = json!({"count": count, "passes": passes});
    (state, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(id: &str, start: u64, end: u64) -> User {
        let mut u = User {
            user_id: id.into(),
            user_type: VISITOR,
            name: format!("name of {id}"),
            ..User::default()
        };
        u.extra.insert("startTime".into(), json!(start));
        u.extra.insert("endTime".into(), json!(end));
        u
    }

    #[test]
    fn only_visitors_inside_their_window_count() {
        let staff = User {
            user_id: "s".into(),
            user_type: 1,
            ..User::default()
        };
        let users = [
            visitor("now", 100, 200),
            visitor("later", 300, 400),
            visitor("over", 10, 50),
            visitor("open", 0, 0),
            staff,
        ];
        let (state, next) = visitors_state(&users, 150);
        assert_eq!(state["count"], json!(2));
        let ids: Vec<_> = state["passes"]
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p["user_id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["now", "open"]);
        assert_eq!(next, Some(201), "the first pass ends after second 200");
    }

    #[test]
    fn a_pass_that_starts_now_counts_and_changes_next_when_it_ends() {
        let (state, next) = visitors_state(&[visitor("v", 100, 200)], 100);
        assert_eq!((state["count"].clone(), next), (json!(1), Some(201)));
        let (state, next) = visitors_state(&[visitor("v", 100, 200)], 200);
        assert_eq!(
            (state["count"].clone(), next),
            (json!(1), Some(201)),
            "valid to its last second"
        );
    }

    #[test]
    fn the_next_change_is_a_pass_that_starts_or_ends() {
        let (_, next) = visitors_state(&[visitor("later", 300, 400)], 150);
        assert_eq!(next, Some(300));
        let (state, next) = visitors_state(&[visitor("over", 10, 50)], 150);
        assert_eq!((state["count"].clone(), next), (json!(0), None));
    }

    #[test]
    fn an_end_beyond_the_year_9999_is_shown_as_its_last_second() {
        let (state, _) = visitors_state(&[visitor("v", 1, i64::MAX as u64)], 5);
        assert_eq!(state["passes"][0]["until"], json!("9999-12-31T23:59:59Z"));
    }

    #[test]
    fn a_roster_of_thousands_is_counted_whole_and_listed_in_part() {
        let users: Vec<User> = (0..5000)
            .map(|i| visitor(&format!("v{i}"), 1, 10))
            .collect();
        let (state, _) = visitors_state(&users, 5);
        assert_eq!(state["count"], json!(5000));
        assert_eq!(state["passes"].as_array().map(Vec::len), Some(MAX_LISTED));
        assert!(state.to_string().len() < 64 * 1024);
    }

    #[test]
    fn a_pass_shows_its_window_in_rfc3339() {
        let (state, _) =
            visitors_state(&[visitor("v", 1_600_000_000, 1_600_003_600)], 1_600_000_001);
        assert_eq!(state["passes"][0]["from"], json!("2020-09-13T12:26:40Z"));
        assert_eq!(state["passes"][0]["until"], json!("2020-09-13T13:26:40Z"));
    }
}
