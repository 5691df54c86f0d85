//! The HTTP servers `compare --workload http` runs side by side: reactor
//! (`http_hello`'s request parsing and responses, on one loop or several),
//! tokio (the same parsing and responses, a task per connection) and nginx
//! (`return 200`, `worker_processes` as many as the others' threads).
//!
//! Each answers `GET /` with `200 OK` and `Hello, World` on a kept-alive
//! connection. reactor and tokio send the same bytes (the `http_hello`
//! example's responses, with its `Date` field formatted once a second);
//! nginx sends its own fields (`Server`, `Date`, `Content-Type`,
//! `Content-Length`, `Connection`), a few dozen bytes more.

// The example's modules, shared so that the reactor and tokio peers parse
// and answer exactly as `http_hello` does. Not every item is used here.
#[allow(dead_code)]
#[path = "../../../../examples/http_hello/date.rs"]
mod date;
#[allow(dead_code)]
#[path = "../../../../examples/http_hello/request.rs"]
mod request;
#[allow(dead_code)]
#[path = "../../../../examples/http_hello/response.rs"]
mod response;

pub mod nginx;
mod reactor_http;
mod tokio_http;

pub use reactor_http::{serve as serve_reactor, serve_loops as serve_reactor_loops};
pub use tokio_http::serve as serve_tokio;

/// The request every HTTP workload sends: a kept-alive `GET /`.
pub const REQUEST: &str = "GET / HTTP/1.1\\r\\nHost: bench\\r\\n\\r\\n";
