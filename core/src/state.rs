//! The states the runtime reports: of a worker and of a server's circuit breaker. Their own
//! module because both the parts that change them and the events that report them use them.

/// The state of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Registered, runtime not started.
    Created,
    /// Polling.
    Running,
    /// Not polling; running tasks go on; [`Worker::resume`](crate::Worker::resume) starts polling again.
    Paused,
    /// Stopping: no new tasks; running tasks finish.
    Stopping,
    /// Stopped.
    Stopped,
}

impl WorkerState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

/// The state of a server's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Polls go out.
    Closed,
    /// No polls until the reset time has passed.
    Open,
    /// One probe poll decides.
    HalfOpen,
}

impl CircuitState {
    /// Lower-case name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}
