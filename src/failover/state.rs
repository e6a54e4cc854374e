//! Endpoint states (RFC 8156 §8) as data: one struct per state with its invariants, the
//! state the store persists (§8.2), and the transition rules as pure functions so the
//! property tests can check them against an independent oracle.

use crate::time::Timestamp;
use crate::wire::failover::ServerState;

/// STARTUP (§8.3): unresponsive while trying to reach the partner for a short time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Startup {
    /// PREVIOUS-STATE of §8.3.2 after step 2 (never `Startup`).
    pub previous: ServerState,
    /// TIME-OF-FAILURE of §8.3.2 (Unix seconds; 0 when unknown).
    pub time_of_failure: u64,
    /// Step 6: the startup timer; on expiry the endpoint enters `previous`.
    pub ends_at: Timestamp,
}

/// NORMAL (§8.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Normal {
    /// Secondary only: POOLREQ sent since entering NORMAL (§8.8 "then send POOLREQ").
    pub pool_requested: bool,
}

/// COMMUNICATIONS-INTERRUPTED (§8.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommunicationsInterrupted {
    /// Auto-partner-down deadline (§8.9.2), when configured.
    pub auto_partner_down_at: Option<Timestamp>,
}

/// PARTNER-DOWN (§8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartnerDown {
    /// Entry time (Unix seconds): the partner's resources become usable at `since + MCLT`.
    pub since: u64,
}

/// POTENTIAL-CONFLICT (§8.10): unresponsive until both databases are reconciled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PotentialConflict {
    /// The UPDREQ this endpoint sent on the current connection, until its UPDDONE.
    /// The primary sends it on entry; the secondary once the primary is CONFLICT-DONE.
    pub update_request: Option<u32>,
}

/// RECOVER (§8.5): learning what the partner did while this server was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recover {
    /// The UPDREQ/UPDREQALL sent on the current connection (re-issued after reconnect).
    pub update_request: Option<u32>,
    /// Whether that request was an UPDREQALL (lost stable storage).
    pub all: bool,
}

/// RECOVER-WAIT (§8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverWait {
    /// TIME-OF-FAILURE (or start time) + MCLT; RECOVER-DONE at this time (Unix seconds).
    pub until: u64,
}

/// RECOVER-DONE (§8.7): renew responsive, waiting for the partner to be NORMAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoverDone;

/// RESOLUTION-INTERRUPTED (§8.11): lost contact during POTENTIAL-CONFLICT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolutionInterrupted;

/// CONFLICT-DONE (§8.12, primary only): responsive, waiting for the secondary's UPDREQ
/// to be answered and the secondary to reach NORMAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConflictDone;

/// The endpoint state with its per-state data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Startup(Startup),
    Normal(Normal),
    CommunicationsInterrupted(CommunicationsInterrupted),
    PartnerDown(PartnerDown),
    PotentialConflict(PotentialConflict),
    Recover(Recover),
    RecoverWait(RecoverWait),
    RecoverDone(RecoverDone),
    ResolutionInterrupted(ResolutionInterrupted),
    ConflictDone(ConflictDone),
}

impl State {
    pub fn name(&self) -> ServerState {
        match self {
            State::Startup(_) => ServerState::Startup,
            State::Normal(_) => ServerState::Normal,
            State::CommunicationsInterrupted(_) => ServerState::CommunicationsInterrupted,
            State::PartnerDown(_) => ServerState::PartnerDown,
            State::PotentialConflict(_) => ServerState::PotentialConflict,
            State::Recover(_) => ServerState::Recover,
            State::RecoverWait(_) => ServerState::RecoverWait,
            State::RecoverDone(_) => ServerState::RecoverDone,
            State::ResolutionInterrupted(_) => ServerState::ResolutionInterrupted,
            State::ConflictDone(_) => ServerState::ConflictDone,
        }
    }
}

/// What RFC 8156 §8.2 says must survive a restart, plus the few facts the startup and
/// recovery algorithms need. The endpoint reports every change with
/// `Event::PersistentStateChanged`; the store writes it before the STATE message leaves
/// (§6.3 "SHOULD be written to stable storage before enqueueing").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistentState {
    /// Current endpoint state (never STARTUP: during startup this is the state to return to).
    pub state: ServerState,
    /// The state before `state`.
    pub previous_state: ServerState,
    /// When `state` was entered (Unix seconds).
    pub start_time_of_state: u64,
    /// Partner's last reported state and its start time (Unix seconds).
    pub partner_state: Option<ServerState>,
    pub partner_start_time_of_state: u64,
    /// Time of the most recent message from the partner (Unix seconds).
    pub last_partner_message: u64,
    /// The latest time this server is known to have been operating (Unix seconds). The
    /// driver refreshes it periodically; after a crash it is TIME-OF-FAILURE (§8.3.2).
    pub last_operating_time: u64,
    /// Whether this server ever reached "communications OK" with its partner (the
    /// OPTION_F_SERVER_FLAGS COMMUNICATED bit, §5.5.12).
    pub communicated: bool,
    /// MCLT in force (seconds): the configured one on the primary, the one dictated by the
    /// primary's CONNECT on the secondary (§6.1.2).
    pub mclt: u32,
    /// When PARTNER-DOWN was entered (Unix seconds), 0 when not in PARTNER-DOWN (§6.3).
    pub partner_down_time: u64,
}

/// §8.3.2 step 2: a state where communications were OK is replaced by the state its
/// "communications failed" transition leads to.
pub fn startup_previous(persisted: ServerState) -> ServerState {
    match comms_failed(persisted) {
        // Never restart into STARTUP itself (it is not a state one can "return" to).
        ServerState::Startup => ServerState::Recover,
        s => s,
    }
}

/// The "communications failed" transition of each state (§8.4.2–§8.12.2).
pub fn comms_failed(s: ServerState) -> ServerState {
    match s {
        // §8.8.2.
        ServerState::Normal => ServerState::CommunicationsInterrupted,
        // §8.10.2.
        ServerState::PotentialConflict => ServerState::ResolutionInterrupted,
        // §8.5.2, §8.6.2, §8.7.2, §8.12.2: stay. The others have no communications.
        other => other,
    }
}

/// The transition taken when communications are OK and the partner reports `partner`
/// (§8.4.2–§8.12.2). Returns the new state (possibly `me`). Transitions driven by
/// UPDDONE or timers are not here.
pub fn partner_state_transition(me: ServerState, partner: ServerState) -> ServerState {
    use ServerState::*;
    match me {
        // §8.4.2.
        PartnerDown => match partner {
            Normal
            | CommunicationsInterrupted
            | PartnerDown
            | PotentialConflict
            | ResolutionInterrupted
            | ConflictDone => PotentialConflict,
            RecoverDone => Normal,
            Recover | RecoverWait | Startup => PartnerDown,
        },
        // §8.5.2: partner in conflict resolution → join it; otherwise stay and send UPDREQ.
        Recover => match partner {
            PotentialConflict | ResolutionInterrupted | ConflictDone => PotentialConflict,
            _ => Recover,
        },
        // §8.6.2: only the timer moves RECOVER-WAIT.
        RecoverWait => RecoverWait,
        // §8.7.2.
        RecoverDone => match partner {
            Normal | RecoverDone => Normal,
            Recover | RecoverWait => CommunicationsInterrupted,
            PotentialConflict => PotentialConflict,
            _ => RecoverDone,
        },
        // §8.8.2: an unexpected partner state is a communications failure first, then
        // the COMMUNICATIONS-INTERRUPTED transition for that partner state.
        Normal => match partner {
            Normal | CommunicationsInterrupted | ConflictDone | RecoverDone | Startup => Normal,
            other => partner_state_transition(CommunicationsInterrupted, other),
        },
        // §8.9.2. Partner RECOVER-WAIT is not listed; staying until it is RECOVER-DONE
        // is the consistent reading (docs/FAILOVER.md D5).
        CommunicationsInterrupted => match partner {
            Normal | CommunicationsInterrupted | RecoverDone => Normal,
            Recover | RecoverWait | Startup => CommunicationsInterrupted,
            PartnerDown | PotentialConflict | ConflictDone | ResolutionInterrupted => {
                PotentialConflict
            }
        },
        // §8.10.2: left through UPDDONE only.
        PotentialConflict => PotentialConflict,
        // §8.11.2: communications OK → POTENTIAL-CONFLICT.
        ResolutionInterrupted => PotentialConflict,
        // §8.12.2: the secondary entering NORMAL completes the resolution.
        ConflictDone => match partner {
            Normal => Normal,
            _ => ConflictDone,
        },
        Startup => Startup,
    }
}

/// §8.3.2 step 5: where a server leaving STARTUP goes, before the communications-OK
/// transition. `partner_start` is the partner's start-time-of-state (Unix seconds).
pub fn leave_startup(
    previous: ServerState,
    time_of_failure: u64,
    partner: ServerState,
    partner_start: u64,
) -> ServerState {
    if partner == ServerState::PartnerDown {
        // A server that stopped while still recovering its database (RECOVER,
        // RECOVER-WAIT: unresponsive, §8.5.1, §8.6.1) never allocated anything the partner
        // could conflict with, but its database is incomplete: POTENTIAL-CONFLICT would
        // let it serve from that database in RESOLUTION-INTERRUPTED (found by the
        // simulation, docs/FAILOVER.md D12). It resumes recovery whatever the times say.
        if partner_start > time_of_failure
            || matches!(previous, ServerState::Recover | ServerState::RecoverWait)
        {
            return ServerState::Recover;
        }
        return ServerState::PotentialConflict;
    }
    previous
}

#[cfg(test)]
mod tests {
    use super::{comms_failed, leave_startup, partner_state_transition, startup_previous};
    use crate::wire::failover::ServerState::*;

    #[test]
    fn figure_9_and_recovery_paths() {
        assert_eq!(
            partner_state_transition(PartnerDown, CommunicationsInterrupted),
            PotentialConflict
        );
        assert_eq!(
            partner_state_transition(CommunicationsInterrupted, PartnerDown),
            PotentialConflict
        );
        assert_eq!(partner_state_transition(ConflictDone, Normal), Normal);
        assert_eq!(partner_state_transition(RecoverDone, Normal), Normal);
        assert_eq!(partner_state_transition(PartnerDown, RecoverDone), Normal);
        assert_eq!(
            partner_state_transition(Normal, PartnerDown),
            PotentialConflict
        );
        assert_eq!(startup_previous(Normal), CommunicationsInterrupted);
        assert_eq!(startup_previous(PotentialConflict), ResolutionInterrupted);
        assert_eq!(leave_startup(Normal, 100, PartnerDown, 200), Recover);
        assert_eq!(
            leave_startup(Normal, 300, PartnerDown, 200),
            PotentialConflict
        );
        // Stopped while still recovering (after the partner entered PARTNER-DOWN): the
        // database is incomplete, so recovery resumes.
        assert_eq!(leave_startup(Recover, 300, PartnerDown, 200), Recover);
        assert_eq!(leave_startup(RecoverWait, 300, PartnerDown, 200), Recover);
    }

    /// The oracle: RFC 8156 §8.4.2–§8.12.2 (and §8.8.2's "unexpected partner state") written
    /// out as a table from the text, independently of the `match` above. `None` = stay.
    fn oracle(me: u8, partner: u8) -> Option<u8> {
        // Codes: 1 STARTUP 2 NORMAL 3 COMM-INT 4 PARTNER-DOWN 5 POTENTIAL-CONFLICT
        // 6 RECOVER 7 RECOVER-WAIT 8 RECOVER-DONE 9 RESOLUTION-INTERRUPTED 10 CONFLICT-DONE
        let comm_int = |p: u8| match p {
            2 | 3 | 8 => Some(2),
            4 | 5 | 9 | 10 => Some(5),
            _ => None,
        };
        match me {
            4 => match p_in(partner, &[2, 3, 4, 5, 9, 10]) {
                true => Some(5),
                false if partner == 8 => Some(2),
                false => None,
            },
            6 => p_in(partner, &[5, 9, 10]).then_some(5),
            8 => match partner {
                2 | 8 => Some(2),
                6 | 7 => Some(3),
                5 => Some(5),
                _ => None,
            },
            2 => match partner {
                2 | 3 | 10 | 8 | 1 => None,
                // §8.8.2: go to COMM-INT, then take its transition.
                p => Some(comm_int(p).unwrap_or(3)),
            },
            3 => comm_int(partner),
            9 => Some(5),
            10 => (partner == 2).then_some(2),
            _ => None,
        }
    }

    fn p_in(p: u8, set: &[u8]) -> bool {
        set.contains(&p)
    }

    proptest::proptest! {
        #[test]
        fn transitions_match_the_oracle(me in 1u8..=10, partner in 1u8..=10) {
            let m = crate::wire::failover::ServerState::from_u8(me).unwrap();
            let p = crate::wire::failover::ServerState::from_u8(partner).unwrap();
            let got = partner_state_transition(m, p) as u8;
            let want = oracle(me, partner).unwrap_or(me);
            proptest::prop_assert_eq!(got, want, "me {:?} partner {:?}", m, p);
        }

        #[test]
        fn comms_failure_never_lands_in_a_comms_ok_only_state(me in 1u8..=10) {
            let m = crate::wire::failover::ServerState::from_u8(me).unwrap();
            let next = comms_failed(m);
            // §8.8.2 / §8.10.2: NORMAL and POTENTIAL-CONFLICT need a partner.
            proptest::prop_assert!(!matches!(next, Normal | PotentialConflict));
            proptest::prop_assert_ne!(startup_previous(m), Startup);
        }
    }
}
