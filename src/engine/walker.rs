//! A small scheduler for a dependency graph of tasks: it knows nothing about hosts.
//!
//! A task becomes ready when every task it depends on succeeded. Each task belongs to a
//! pool (a cluster node), and each pool runs at most its own number of tasks at once; a
//! total caps them all. A pool never waits on another's queue: a free slot of one pool
//! takes that pool's best ready task whatever the others hold. Ready tasks run highest
//! priority first: the longest remaining path of estimated cost, so
//! the critical chain never waits behind short branches. A task may name a resource:
//! tasks sharing one take turns (clones of one source), while everything else runs in
//! parallel. Since those tasks form a chain of their own, the remaining path counts them
//! back to back (a template with forty clones waiting is urgent), and a ready task's
//! priority is at least the work still queued on its resource (the busiest source keeps
//! cloning). A failed task blocks its dependents and nothing else; with `fail_fast`, no
//! new task starts after the first failure.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Task {
    pub deps: Vec<usize>,
    /// Tasks with the same resource never run at the same time.
    pub resource: Option<String>,
    /// Estimated cost (any unit); drives the priority.
    pub cost: u64,
    /// The pool it runs in (an index into [`Pools::sizes`]).
    pub pool: usize,
}

/// How many tasks run at once: per pool, and in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    pub sizes: Vec<usize>,
    pub total: usize,
}

impl Pools {
    /// One pool of `workers`.
    pub fn single(workers: usize) -> Pools {
        Pools {
            sizes: vec![workers.max(1)],
            total: workers.max(1),
        }
    }
    /// `n` pools of `per_pool` each, `total` at most in all (`None`: no cap beyond them).
    pub fn per_pool(n: usize, per_pool: usize, total: Option<usize>) -> Pools {
        let n = n.max(1);
        let per_pool = per_pool.max(1);
        Pools {
            sizes: vec![per_pool; n],
            total: total.unwrap_or(n * per_pool).clamp(1, n * per_pool),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Not run: this task (an ancestor of it) failed or was blocked.
    Blocked {
        by: usize,
    },
    /// Not run: the walk stopped early (`fail_fast`).
    Cancelled,
}

/// Longest path of cost from each task to the end of the graph, itself included.
pub fn priorities(tasks: &[Task]) -> Vec<u64> {
    let mut dependents = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for &d in &t.deps {
            dependents[d].push(i);
        }
    }
    let order = topo_order(tasks);
    let mut prio = vec![0u64; tasks.len()];
    for &i in order.iter().rev() {
        let mut tail = dependents[i].iter().map(|&d| prio[d]).max().unwrap_or(0);
        // Dependents sharing a resource run one after another: their costs add up, then
        // the shortest of their own tails follows the last one.
        let mut groups: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for &d in &dependents[i] {
            if let Some(r) = &tasks[d].resource {
                let g = groups.entry(r.as_str()).or_insert((0, u64::MAX));
                g.0 += tasks[d].cost;
                g.1 = g.1.min(prio[d] - tasks[d].cost);
            }
        }
        for (sum, min_tail) in groups.into_values() {
            tail = tail.max(sum + min_tail);
        }
        prio[i] = tasks[i].cost + tail;
    }
    prio
}

fn topo_order(tasks: &[Task]) -> Vec<usize> {
    let mut pending: Vec<usize> = tasks.iter().map(|t| t.deps.len()).collect();
    let mut dependents = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for &d in &t.deps {
            dependents[d].push(i);
        }
    }
    let mut queue: VecDeque<usize> = (0..tasks.len()).filter(|&i| pending[i] == 0).collect();
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(i) = queue.pop_front() {
        out.push(i);
        for &d in &dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                queue.push_back(d);
            }
        }
    }
    out
}

struct State {
    outcome: Vec<Option<Outcome>>,
    waiting_on: Vec<usize>,
    ready: BTreeSet<(std::cmp::Reverse<u64>, usize)>,
    busy: BTreeSet<String>,
    /// Tasks running in each pool.
    in_pool: Vec<usize>,
    /// Cost of the tasks not yet started, per resource.
    backlog: std::collections::BTreeMap<String, u64>,
    running: usize,
    stop: bool,
}

/// Runs every task; `run(i)` returns whether task `i` succeeded. Returns each task's outcome.
pub fn walk<F>(tasks: &[Task], workers: usize, fail_fast: bool, run: F) -> Vec<Outcome>
where
    F: Fn(usize) -> bool + Sync,
{
    walk_until(tasks, workers, fail_fast, &|| false, run)
}

/// [`walk`], starting nothing new once `stop()` holds (a cancelled run): tasks already
/// running finish, the rest are [`Outcome::Cancelled`]. Every task counts as one pool.
pub fn walk_until<F>(
    tasks: &[Task],
    workers: usize,
    fail_fast: bool,
    stop: &(dyn Fn() -> bool + Sync),
    run: F,
) -> Vec<Outcome>
where
    F: Fn(usize) -> bool + Sync,
{
    let one: Vec<Task> = tasks
        .iter()
        .map(|t| Task {
            pool: 0,
            ..t.clone()
        })
        .collect();
    walk_pools(&one, &Pools::single(workers), fail_fast, stop, run)
}

/// [`walk_until`] with each task in its pool ([`Pools`]).
pub fn walk_pools<F>(
    tasks: &[Task],
    pools: &Pools,
    fail_fast: bool,
    stop: &(dyn Fn() -> bool + Sync),
    run: F,
) -> Vec<Outcome>
where
    F: Fn(usize) -> bool + Sync,
{
    let size = |pool: usize| pools.sizes.get(pool).copied().unwrap_or(1).max(1);
    let workers = pools
        .total
        .min(pools.sizes.iter().map(|s| (*s).max(1)).sum())
        .max(1);
    let prio = priorities(tasks);
    let mut dependents = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for &d in &t.deps {
            dependents[d].push(i);
        }
    }
    let waiting_on: Vec<usize> = tasks.iter().map(|t| t.deps.len()).collect();
    let ready = (0..tasks.len())
        .filter(|&i| waiting_on[i] == 0)
        .map(|i| (std::cmp::Reverse(prio[i]), i))
        .collect();
    let state = Mutex::new(State {
        outcome: vec![None; tasks.len()],
        waiting_on,
        ready,
        busy: BTreeSet::new(),
        in_pool: vec![
            0;
            pools
                .sizes
                .len()
                .max(1 + tasks.iter().map(|t| t.pool).max().unwrap_or(0))
        ],
        backlog: tasks.iter().fold(Default::default(), |mut m, t| {
            if let Some(r) = &t.resource {
                *m.entry(r.clone()).or_insert(0) += t.cost;
            }
            m
        }),
        running: 0,
        stop: false,
    });
    let wake = Condvar::new();

    let block = |st: &mut State, from: usize| {
        let mut stack = dependents[from].clone();
        while let Some(d) = stack.pop() {
            if st.outcome[d].is_none() {
                st.outcome[d] = Some(Outcome::Blocked { by: from });
                stack.extend(dependents[d].iter().copied());
            }
        }
    };

    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let mut st = state.lock().expect("walker state");
                let task = loop {
                    if !st.stop && stop() {
                        st.stop = true;
                    }
                    if st.stop && st.running == 0 {
                        break None;
                    }
                    let pick = if st.stop {
                        None
                    } else {
                        // Highest of: the task's own remaining path, the work queued
                        // on its resource. Ties go to the static order.
                        let effective = |(p, i): &(std::cmp::Reverse<u64>, usize)| {
                            let queued =
                                tasks[*i].resource.as_ref().and_then(|r| st.backlog.get(r));
                            p.0.max(queued.copied().unwrap_or(0))
                        };
                        st.ready
                            .iter()
                            .filter(|(_, i)| {
                                tasks[*i]
                                    .resource
                                    .as_ref()
                                    .is_none_or(|r| !st.busy.contains(r))
                                    && st.in_pool[tasks[*i].pool] < size(tasks[*i].pool)
                            })
                            .fold(
                                None,
                                |best: Option<(u64, (std::cmp::Reverse<u64>, usize))>, e| {
                                    let v = effective(e);
                                    match best {
                                        Some((b, _)) if b >= v => best,
                                        _ => Some((v, *e)),
                                    }
                                },
                            )
                            .map(|(_, e)| e)
                    };
                    if let Some(entry) = pick {
                        st.ready.remove(&entry);
                        break Some(entry.1);
                    }
                    if st.ready.is_empty() && st.running == 0 {
                        break None;
                    }
                    st = wake.wait(st).expect("walker state");
                };
                let Some(i) = task else {
                    wake.notify_all();
                    return;
                };
                st.running += 1;
                st.in_pool[tasks[i].pool] += 1;
                if let Some(r) = &tasks[i].resource {
                    st.busy.insert(r.clone());
                    if let Some(b) = st.backlog.get_mut(r) {
                        *b = b.saturating_sub(tasks[i].cost);
                    }
                }
                drop(st);

                // A task that panics fails like any other instead of stalling the walk.
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i)))
                    .unwrap_or(false);

                let mut st = state.lock().expect("walker state");
                st.running -= 1;
                st.in_pool[tasks[i].pool] -= 1;
                if let Some(r) = &tasks[i].resource {
                    st.busy.remove(r);
                }
                if ok {
                    st.outcome[i] = Some(Outcome::Succeeded);
                    for &d in &dependents[i] {
                        st.waiting_on[d] -= 1;
                        if st.waiting_on[d] == 0 && st.outcome[d].is_none() {
                            st.ready.insert((std::cmp::Reverse(prio[d]), d));
                        }
                    }
                } else {
                    st.outcome[i] = Some(Outcome::Failed);
                    block(&mut st, i);
                    if fail_fast {
                        st.stop = true;
                    }
                }
                drop(st);
                wake.notify_all();
            });
        }
    });

    let st = state.into_inner().expect("walker state");
    st.outcome
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Cancelled))
        .collect()
}

#[cfg(test)]
mod stop_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_stop_starts_nothing_new_and_lets_running_tasks_finish() {
        let tasks: Vec<Task> = (0..4)
            .map(|i| Task {
                deps: if i == 0 { vec![] } else { vec![i - 1] },
                cost: 1,
                resource: None,
                pool: 0,
            })
            .collect();
        let stopped = AtomicBool::new(false);
        let out = walk_until(&tasks, 2, false, &|| stopped.load(Ordering::SeqCst), |i| {
            if i == 1 {
                stopped.store(true, Ordering::SeqCst);
            }
            true
        });
        assert_eq!(
            out,
            [
                Outcome::Succeeded,
                Outcome::Succeeded,
                Outcome::Cancelled,
                Outcome::Cancelled
            ]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn t(deps: &[usize], cost: u64) -> Task {
        Task {
            deps: deps.to_vec(),
            resource: None,
            cost,
            pool: 0,
        }
    }

    #[test]
    fn runs_parents_first_and_blocks_only_the_failed_subtree() {
        // 0 → 1 → 2, 0 → 3; 1 fails
        let tasks = vec![t(&[], 1), t(&[0], 1), t(&[1], 1), t(&[0], 1)];
        let done = Mutex::new(Vec::new());
        let out = walk(&tasks, 2, false, |i| {
            done.lock().unwrap().push(i);
            i != 1
        });
        assert_eq!(
            out,
            vec![
                Outcome::Succeeded,
                Outcome::Failed,
                Outcome::Blocked { by: 1 },
                Outcome::Succeeded
            ]
        );
        let done = done.into_inner().unwrap();
        assert_eq!(done[0], 0);
        assert!(!done.contains(&2));
    }

    #[test]
    fn a_panicking_task_fails_without_stalling_the_others() {
        let tasks = vec![t(&[], 1), t(&[0], 1), t(&[], 1)];
        let out = walk(&tasks, 2, false, |i| {
            if i == 0 {
                panic!("task 0 panics");
            }
            true
        });
        assert_eq!(
            out,
            vec![
                Outcome::Failed,
                Outcome::Blocked { by: 0 },
                Outcome::Succeeded
            ]
        );
    }

    #[test]
    fn fail_fast_starts_nothing_new() {
        let tasks = vec![t(&[], 5), t(&[], 1), t(&[1], 1)];
        let out = walk(&tasks, 1, true, |i| i != 0);
        assert_eq!(out[0], Outcome::Failed);
        assert_eq!(out[1], Outcome::Cancelled);
        assert_eq!(out[2], Outcome::Cancelled);
    }

    #[test]
    fn longest_remaining_path_goes_first() {
        // a long chain 0→1→2 and a short independent task 3 with the same first cost
        let tasks = vec![t(&[], 1), t(&[0], 1), t(&[1], 1), t(&[], 1)];
        assert_eq!(priorities(&tasks), vec![3, 2, 1, 1]);
        let order = Mutex::new(Vec::new());
        walk(&tasks, 1, false, |i| {
            order.lock().unwrap().push(i);
            true
        });
        assert_eq!(order.into_inner().unwrap()[0], 0);
    }

    #[test]
    fn clones_waiting_on_one_source_make_it_urgent() {
        // 0 has 5 clones (one resource) of cost 10; 1 has a child chain of 20.
        let mut tasks = vec![t(&[], 1), t(&[], 1), t(&[1], 20)];
        for _ in 0..5 {
            tasks.push(Task {
                deps: vec![0],
                resource: Some("clone:0".into()),
                cost: 10,
                pool: 0,
            });
        }
        let p = priorities(&tasks);
        assert_eq!(p[0], 51, "five clones back to back");
        assert_eq!(p[1], 21);
        // With one worker, the busy source goes first.
        let order = Mutex::new(Vec::new());
        walk(&tasks, 1, false, |i| {
            order.lock().unwrap().push(i);
            true
        });
        assert_eq!(order.into_inner().unwrap()[0], 0);
    }

    #[test]
    fn a_resource_is_used_by_one_task_at_a_time() {
        let tasks: Vec<Task> = (0..6)
            .map(|i| Task {
                deps: vec![],
                resource: (i < 4).then(|| "clone:100".to_string()),
                cost: 1,
                pool: 0,
            })
            .collect();
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        let start = Instant::now();
        walk(&tasks, 6, false, |i| {
            if i < 4 {
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                inside.fetch_sub(1, Ordering::SeqCst);
            }
            true
        });
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(start.elapsed() >= Duration::from_millis(80));
    }

    #[test]
    fn each_pool_runs_its_own_tasks_and_never_waits_on_anothers_queue() {
        // Pool 0 has four long tasks and one slot; pool 1 one short task. The short task
        // runs at once, not behind pool 0's queue, though it ranks last.
        let mut tasks: Vec<Task> = (0..4)
            .map(|_| Task {
                cost: 100,
                pool: 0,
                ..Task::default()
            })
            .collect();
        tasks.push(Task {
            cost: 1,
            pool: 1,
            ..Task::default()
        });
        let in_pool0 = AtomicUsize::new(0);
        let max0 = AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        walk_pools(
            &tasks,
            &Pools::per_pool(2, 1, None),
            false,
            &|| false,
            |i| {
                if i < 4 {
                    let n = in_pool0.fetch_add(1, Ordering::SeqCst) + 1;
                    max0.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    in_pool0.fetch_sub(1, Ordering::SeqCst);
                }
                order.lock().unwrap().push(i);
                true
            },
        );
        assert_eq!(max0.load(Ordering::SeqCst), 1, "one slot in pool 0");
        assert_eq!(order.into_inner().unwrap()[0], 4, "pool 1 did not wait");
    }

    #[test]
    fn the_total_caps_every_pool_together_and_priority_decides_among_them() {
        let tasks: Vec<Task> = (0..6)
            .map(|i| Task {
                cost: 10 + i as u64,
                pool: i % 3,
                ..Task::default()
            })
            .collect();
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        walk_pools(
            &tasks,
            &Pools::per_pool(3, 2, Some(2)),
            false,
            &|| false,
            |i| {
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                inside.fetch_sub(1, Ordering::SeqCst);
                order.lock().unwrap().push(i);
                true
            },
        );
        assert_eq!(max.load(Ordering::SeqCst), 2, "two at a time in all");
        let order = order.into_inner().unwrap();
        assert!(
            order[..2].contains(&5) && order[..2].contains(&4),
            "the longest first: {order:?}"
        );
        assert_eq!(
            Pools::per_pool(3, 2, Some(100)).total,
            6,
            "a cap above the pools is theirs"
        );
    }
}
