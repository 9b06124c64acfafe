//! The HTTP front door (GraphQL, /metrics, health). Built on the spine by the API issue.
