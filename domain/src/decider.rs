//! The decider pattern: `decide(command, state) -> events`, `evolve(state, event) -> state`.

use crate::event::DomainEvent;

/// What kind of refusal a domain error is, so that every transport reports it the same way (the
/// API's `extensions.code`, the CLI's message). Each domain error says its own, beside its
/// definition: a new variant does not compile until it says which it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The command is malformed or asks for something impossible.
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// It contradicts the current state: exists already, deleted, revoked, finished.
    Conflict,
    /// The actor may not do this.
    Forbidden,
}

/// A domain error: it says which kind of refusal it is.
pub trait Refuse: std::error::Error {
    fn refusal(&self) -> Refusal;
}

/// One aggregate's behaviour. Implementations are pure: everything a decision needs from the
/// outside world arrives inside the command.
pub trait Decider {
    type Command;
    type Event: DomainEvent;
    type State: Default + Clone + std::fmt::Debug;
    type Error: Refuse + PartialEq;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}

/// given(events).when(command).then(events | error), for the deciders' unit tests.
#[cfg(test)]
pub(crate) mod spec {
    use super::Decider;

    pub struct Given<D: Decider> {
        state: D::State,
    }

    pub fn given<D: Decider>(events: &[D::Event]) -> Given<D> {
        Given { state: D::fold(events) }
    }

    pub struct When<D: Decider> {
        result: Result<Vec<D::Event>, D::Error>,
    }

    impl<D: Decider> Given<D> {
        pub fn when(self, command: D::Command) -> When<D> {
            When { result: D::decide(&command, &self.state) }
        }
    }

    impl<D: Decider> When<D>
    where
        D::Event: PartialEq,
    {
        #[track_caller]
        pub fn then(self, expected: &[D::Event]) {
            match self.result {
                Ok(events) => assert_eq!(events, expected),
                Err(err) => panic!("expected events {expected:?}, got error {err:?}"),
            }
        }

        #[track_caller]
        pub fn then_error(self, expected: D::Error) {
            match self.result {
                Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
                Err(err) => assert_eq!(err, expected),
            }
        }
    }
}
