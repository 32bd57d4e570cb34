//! The typed states of containers and remote pods, and the legal transitions
//! between them, written once. [`crate::lifecycle`] makes every change and
//! refuses what this table does not allow.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::proto::runtime::v1 as cri;

/// A container's CRI state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContainerState {
    /// Created, never started.
    #[default]
    Created,
    /// Started: in a batch, sent, or running remotely (remote waiting too).
    Running,
    /// Exited, for good: a restarted container is a new container.
    Exited,
    /// The remote side's answer could not be mapped (a state-mapping hook said so).
    Unknown,
}

impl ContainerState {
    /// Every state, in CRI order.
    pub const ALL: [ContainerState; 4] = [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Unknown,
    ];

    /// May a container in this state be put in `next`?
    ///
    /// | from \ to | Created | Running | Exited | Unknown |
    /// |---|---|---|---|---|
    /// | Created | – | start | stop before start | – |
    /// | Running | – | – | exit | remote unknown |
    /// | Exited  | – | – | – | – |
    /// | Unknown | – | remote running | exit | – |
    ///
    /// A started container is never shown CREATED again (kubelet would start it
    /// again), and an exited one never comes back.
    pub fn can_become(self, next: ContainerState) -> bool {
        use ContainerState::*;
        matches!(
            (self, next),
            (Created, Running)
                | (Created, Exited)
                | (Running, Exited)
                | (Running, Unknown)
                | (Unknown, Running)
                | (Unknown, Exited)
        )
    }

    pub fn is_exited(self) -> bool {
        self == ContainerState::Exited
    }

    /// The CRI enum.
    pub fn to_cri(self) -> cri::ContainerState {
        match self {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }

    /// The CRI enum's wire value.
    pub fn as_i32(self) -> i32 {
        self.to_cri() as i32
    }

    /// From the CRI enum's wire value (an unknown value is `Unknown`).
    pub fn from_i32(v: i32) -> ContainerState {
        match cri::ContainerState::try_from(v) {
            Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }

    /// The CRI name (`CONTAINER_RUNNING`, ...).
    pub fn cri_name(self) -> &'static str {
        self.to_cri().as_str_name()
    }

    /// Lower-case name (metrics labels).
    pub fn label(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Unknown => "unknown",
        }
    }
}

// Persisted as the CRI wire value, as state files written before the type
// existed hold it.
impl Serialize for ContainerState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.as_i32())
    }
}

impl<'de> Deserialize<'de> for ContainerState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ContainerState::from_i32(i32::deserialize(d)?))
    }
}

/// Where a remote pod (one batch) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for the batch window to close.
    Collecting,
    /// `/create` is (or may have been) sent: on recovery, ask `/status` before re-sending.
    Sending,
    Created,
    /// `/create` was refused; nothing runs remotely.
    Failed,
    /// `/delete` is due (or in flight).
    Deleting,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Collecting,
        Phase::Sending,
        Phase::Created,
        Phase::Failed,
        Phase::Deleting,
    ];

    /// May a remote pod in this phase be put in `next`? (Leaving the store is
    /// [`Phase::can_be_forgotten`].)
    ///
    /// Collecting → Sending → Created | Failed → Deleting; a batch whose
    /// containers were all stopped before it was sent is forgotten; one stopped
    /// while `Sending` (its `/create` may have arrived) is deleted.
    pub fn can_become(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (Collecting, Sending)
                | (Sending, Created)
                | (Sending, Failed)
                | (Sending, Deleting)
                | (Created, Deleting)
                | (Failed, Deleting)
        )
    }

    /// May the record go? Only when nothing was sent (`Collecting`), or once
    /// the delete was confirmed (`Deleting`).
    pub fn can_be_forgotten(self) -> bool {
        matches!(self, Phase::Collecting | Phase::Deleting)
    }

    /// Has `/create` succeeded (something may run remotely)?
    pub fn is_live_remotely(self) -> bool {
        matches!(self, Phase::Created | Phase::Deleting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_transitions_table() {
        use ContainerState::*;
        let legal = [
            (Created, Running),
            (Created, Exited),
            (Running, Exited),
            (Running, Unknown),
            (Unknown, Running),
            (Unknown, Exited),
        ];
        for from in ContainerState::ALL {
            for to in ContainerState::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn phase_transitions_table() {
        use Phase::*;
        let legal = [
            (Collecting, Sending),
            (Sending, Created),
            (Sending, Failed),
            (Sending, Deleting),
            (Created, Deleting),
            (Failed, Deleting),
        ];
        for from in Phase::ALL {
            for to in Phase::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
        assert!(Collecting.can_be_forgotten() && Deleting.can_be_forgotten());
        assert!(!Sending.can_be_forgotten() && !Created.can_be_forgotten());
        assert!(!Failed.can_be_forgotten());
    }

    #[test]
    fn state_persists_as_the_cri_value() {
        for s in ContainerState::ALL {
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, s.as_i32().to_string());
            assert_eq!(serde_json::from_str::<ContainerState>(&j).unwrap(), s);
        }
        assert_eq!(
            serde_json::from_str::<ContainerState>("2").unwrap(),
            ContainerState::Exited
        );
        assert_eq!(
            serde_json::from_str::<ContainerState>("9").unwrap(),
            ContainerState::Unknown
        );
    }
}
