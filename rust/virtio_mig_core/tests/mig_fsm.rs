// SPDX-License-Identifier: GPL-2.0
//! Tests of the migration state machine.

use std::collections::{BTreeSet, VecDeque};

use virtio_mig_core::mig_fsm::*;
use State::*;

const FLAG_SETS: [Flags; 4] = [
    Flags::STOP_COPY,
    Flags(Flags::STOP_COPY.0 | Flags::P2P.0),
    Flags(Flags::STOP_COPY.0 | Flags::PRE_COPY.0),
    Flags::ALL,
];

/// The single arcs a driver must implement for each flag set.
fn expected_arcs(flags: Flags) -> BTreeSet<(u32, u32)> {
    let p2p = flags.contains(Flags::P2P);
    let pre = flags.contains(Flags::PRE_COPY);
    let mut arcs = vec![
        (Stop, StopCopy),
        (StopCopy, Stop),
        (Stop, Resuming),
        (Resuming, Stop),
    ];
    if p2p {
        arcs.extend([
            (Running, RunningP2p),
            (RunningP2p, Running),
            (RunningP2p, Stop),
            (Stop, RunningP2p),
        ]);
    } else {
        arcs.extend([(Running, Stop), (Stop, Running)]);
    }
    if pre {
        arcs.extend([(Running, PreCopy), (PreCopy, Running)]);
        if p2p {
            arcs.extend([
                (PreCopy, PreCopyP2p),
                (PreCopyP2p, PreCopy),
                (PreCopyP2p, StopCopy),
                (RunningP2p, PreCopyP2p),
                (PreCopyP2p, RunningP2p),
            ]);
        } else {
            arcs.push((PreCopy, StopCopy));
        }
    }
    arcs.into_iter()
        .map(|(a, b)| (a.as_u32(), b.as_u32()))
        .collect()
}

fn supported(flags: Flags) -> Vec<State> {
    ALL_STATES
        .iter()
        .copied()
        .filter(|&s| s != Error && flags.supports(s))
        .collect()
}

fn blocked(from: State, to: State) -> bool {
    from == StopCopy && matches!(to, PreCopy | PreCopyP2p)
}

#[test]
fn numeric_values_match_uapi() {
    let values = [
        (Error, 0),
        (Stop, 1),
        (Running, 2),
        (StopCopy, 3),
        (Resuming, 4),
        (RunningP2p, 5),
        (PreCopy, 6),
        (PreCopyP2p, 7),
    ];
    for (s, v) in values {
        assert_eq!(s.as_u32(), v);
        assert_eq!(State::from_u32(v), Some(s));
        assert_eq!(ALL_STATES[v as usize], s);
    }
    assert_eq!(State::from_u32(8), None);
    assert_eq!(Flags::STOP_COPY.0, 1);
    assert_eq!(Flags::P2P.0, 2);
    assert_eq!(Flags::PRE_COPY.0, 4);
    assert_eq!(RunningP2p.to_string(), "RUNNING_P2P");
    assert!(Flags::ALL.is_valid());
    assert!(!Flags::P2P.is_valid());
    assert!(!Flags(9).is_valid());
}

#[test]
fn every_arc_has_actions() {
    for flags in FLAG_SETS {
        for (a, b) in expected_arcs(flags) {
            let (a, b) = (State::from_u32(a).unwrap(), State::from_u32(b).unwrap());
            assert!(arc_actions(a, b).is_some(), "{a} -> {b} has no actions");
            assert!(is_arc(a, b, flags), "{a} -> {b} is not a single arc");
        }
    }
    assert_eq!(
        arc_actions(Running, RunningP2p),
        Some(&[Action::QuiesceQueues][..])
    );
    assert_eq!(
        arc_actions(Resuming, Stop),
        Some(&[Action::LoadState, Action::CloseFiles][..])
    );
    assert_eq!(arc_actions(Running, StopCopy), None);
    assert_eq!(arc_actions(StopCopy, PreCopy), None);
}

#[test]
fn arcs_are_exactly_the_required_set() {
    for flags in FLAG_SETS {
        let mut found = BTreeSet::new();
        for a in supported(flags) {
            for b in supported(flags) {
                if is_arc(a, b, flags) {
                    found.insert((a.as_u32(), b.as_u32()));
                }
            }
        }
        assert_eq!(found, expected_arcs(flags), "flags {flags:?}");
    }
}

fn bfs(from: State, to: State, arcs: &BTreeSet<(u32, u32)>) -> Option<usize> {
    let mut dist = [usize::MAX; NUM_STATES];
    let mut queue = VecDeque::from([from.as_u32()]);
    dist[from as usize] = 0;
    while let Some(s) = queue.pop_front() {
        for &(a, b) in arcs {
            if a == s && dist[b as usize] == usize::MAX {
                dist[b as usize] = dist[a as usize] + 1;
                queue.push_back(b);
            }
        }
    }
    (dist[to as usize] != usize::MAX).then_some(dist[to as usize])
}

#[test]
fn every_pair_reaches_target_by_shortest_single_arcs() {
    for flags in FLAG_SETS {
        let arcs = expected_arcs(flags);
        for from in supported(flags) {
            for to in supported(flags) {
                let mut cur = from;
                let mut steps = 0;
                let mut failed = None;
                while cur != to {
                    match next_step(cur, to, flags) {
                        Ok(next) => {
                            assert!(arcs.contains(&(cur.as_u32(), next.as_u32())));
                            cur = next;
                            steps += 1;
                            assert!(steps <= NUM_STATES);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if blocked(from, to) {
                    assert_eq!(failed, Some(FsmError::Blocked), "{from} -> {to}");
                } else {
                    assert_eq!(failed, None, "{from} -> {to} with {flags:?}");
                    assert_eq!(Some(steps), bfs(from, to, &arcs), "{from} -> {to}");
                }
                assert_eq!(next_step(to, to, flags), Ok(to));
            }
        }
    }
}

#[test]
fn known_multi_step_paths() {
    let path = |from, to, flags| {
        let mut v = vec![from];
        let mut cur = from;
        while cur != to {
            cur = next_step(cur, to, flags).unwrap();
            v.push(cur);
        }
        v
    };
    assert_eq!(
        path(PreCopy, Resuming, Flags::ALL),
        [PreCopy, Running, RunningP2p, Stop, Resuming]
    );
    assert_eq!(
        path(Resuming, PreCopy, Flags::ALL),
        [Resuming, Stop, RunningP2p, Running, PreCopy]
    );
    assert_eq!(
        path(PreCopy, StopCopy, Flags::ALL),
        [PreCopy, PreCopyP2p, StopCopy]
    );
    assert_eq!(
        path(Running, StopCopy, Flags::STOP_COPY),
        [Running, Stop, StopCopy]
    );
    let no_p2p = Flags(Flags::STOP_COPY.0 | Flags::PRE_COPY.0);
    assert_eq!(path(PreCopy, StopCopy, no_p2p), [PreCopy, StopCopy]);
}

/// The states `next_step` walks through from `from` to `to`, both included.
fn walk(from: State, to: State, flags: Flags) -> Result<Vec<State>, FsmError> {
    let mut path = vec![from];
    let mut cur = from;
    while cur != to {
        cur = next_step(cur, to, flags)?;
        path.push(cur);
        assert!(path.len() <= NUM_STATES, "{from} -> {to} loops: {path:?}");
    }
    Ok(path)
}

/// The uAPI's "saving group": the states that share one data transfer session.
fn saving_group(s: State) -> bool {
    matches!(s, PreCopy | PreCopyP2p | StopCopy)
}

// vfio.h: "The path cannot have saving group states as interior arcs, only starting/end
// states": an interior one would open or end a data session the user never gets, and so
// would an interior RESUMING. A path wholly inside the group keeps its one session
// (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY).
#[test]
fn paths_pass_no_saving_or_resuming_state() {
    for flags in FLAG_SETS {
        for from in supported(flags) {
            for to in supported(flags) {
                let path = match walk(from, to, flags) {
                    Ok(path) => path,
                    Err(e) => {
                        assert!(blocked(from, to), "{from} -> {to} with {flags:?}: {e}");
                        continue;
                    }
                };
                let within_group = path.iter().all(|&s| saving_group(s));
                for &s in path.iter().skip(1).take(path.len().saturating_sub(2)) {
                    assert_ne!(s, Resuming, "{from} -> {to} with {flags:?}: {path:?}");
                    assert!(
                        !saving_group(s) || within_group,
                        "{from} -> {to} with {flags:?} passes {s}: {path:?}"
                    );
                }
                // ERROR is never a step: a refused or failed arc is an error instead.
                assert!(
                    !path.contains(&Error),
                    "{from} -> {to} with {flags:?}: {path:?}"
                );
            }
        }
    }
}

#[test]
fn error_is_terminal_except_reset() {
    for flags in FLAG_SETS {
        for s in ALL_STATES {
            assert_eq!(next_step(Error, s, flags), Err(FsmError::InError));
            if s != Error && flags.supports(s) {
                assert_eq!(next_step(s, Error, flags), Err(FsmError::BadTarget));
            }
            assert_eq!(arc_actions(Error, s), None);
        }
    }
    assert_eq!(RESET_STATE, Running);
    assert_eq!(RESET_ACTIONS, &[Action::CloseFiles]);
}

#[test]
fn unsupported_states_are_refused() {
    let f = Flags::STOP_COPY;
    assert_eq!(next_step(Running, RunningP2p, f), Err(FsmError::BadTarget));
    assert_eq!(next_step(Running, PreCopy, f), Err(FsmError::BadTarget));
    assert_eq!(next_step(PreCopy, Running, f), Err(FsmError::BadCurrent));
    assert_eq!(FsmError::Blocked.to_string(), "transition is not allowed");
}

/// Device model of the action semantics: executes actions, checking their
/// preconditions, and exposes the observable condition of the device.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Dev {
    queues_running: bool,
    saving: bool,
    resuming: bool,
    precopy_sent: bool,
    final_sent: bool,
}

impl Dev {
    fn for_state(s: State) -> Dev {
        Dev {
            queues_running: s.is_running(),
            saving: s.has_saving_file(),
            resuming: s.has_resuming_file(),
            precopy_sent: matches!(s, PreCopy | PreCopyP2p),
            final_sent: s == StopCopy,
        }
    }

    /// Runs `a` on the model; returns whether it needed the device's registers (queue state,
    /// the saved state, the restored state).
    fn run(&mut self, a: Action) -> bool {
        let (running, saved) = (self.queues_running, self.final_sent);
        self.apply(a);
        a == Action::LoadState || running != self.queues_running || (!saved && self.final_sent)
    }

    fn apply(&mut self, a: Action) {
        match a {
            Action::QuiesceQueues => {
                assert!(self.queues_running);
                self.queues_running = false;
            }
            Action::ResumeQueues => {
                assert!(!self.queues_running);
                self.queues_running = true;
            }
            Action::OpenSavingFile => {
                assert!(!self.saving && !self.resuming);
                self.saving = true;
            }
            Action::SavePrecopyData => {
                assert!(self.saving && !self.precopy_sent);
                self.precopy_sent = true;
            }
            Action::SaveFinalState => {
                assert!(self.saving && !self.queues_running && !self.final_sent);
                self.final_sent = true;
            }
            Action::OpenResumingFile => {
                assert!(!self.saving && !self.resuming && !self.queues_running);
                self.resuming = true;
            }
            Action::LoadState => {
                assert!(self.resuming && !self.queues_running);
            }
            Action::CloseFiles => {
                self.saving = false;
                self.resuming = false;
                self.precopy_sent = false;
                self.final_sent = false;
            }
        }
    }
}

#[test]
fn actions_keep_device_consistent_with_state() {
    for flags in FLAG_SETS {
        for from in supported(flags) {
            for to in supported(flags) {
                if blocked(from, to) {
                    continue;
                }
                let mut dev = Dev::for_state(from);
                let mut cur = from;
                while cur != to {
                    let next = next_step(cur, to, flags).unwrap();
                    for &a in arc_actions(cur, next).unwrap() {
                        let used = dev.run(a);
                        assert_eq!(a.touches_device(), used, "{} ({cur} -> {next})", a.name());
                    }
                    cur = next;
                    let mut want = Dev::for_state(cur);
                    if cur == StopCopy {
                        // Whether pre-copy data went first depends on the path.
                        want.precopy_sent = dev.precopy_sent;
                    }
                    assert_eq!(dev, want, "after arc to {cur} ({from} -> {to})");
                }
            }
        }
    }
}
