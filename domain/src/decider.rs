//! The decider pattern: `decide(command, state) -> events`, `evolve(state, event) -> state`.

use crate::event::DomainEvent;

/// One aggregate's behaviour. Implementations are pure: everything a decision needs from the
/// outside world arrives inside the command.
pub trait Decider {
    type Command;
    type Event: DomainEvent;
    type State: Default + Clone + std::fmt::Debug;
    type Error: std::error::Error + PartialEq;

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
