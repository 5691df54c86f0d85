//! The responses, as byte strings fixed at compile time: answering a request
//! formats nothing and allocates nothing.

use reactor_loop::Context;

use super::date::DATE_LINE_LEN;
use super::request::{Persistence, Refusal};

/// One response, in the pieces that do not depend on the request.
pub struct Reply {
    /// Status line and `Server`; the `Date` line follows.
    pub start: &'static [u8],
    /// `Content-Type`, `Content-Length` and any other fixed field.
    pub fields: &'static [u8],
    /// Sent for every method but `HEAD`.
    pub body: &'static [u8],
}

pub const OK: Reply = Reply {
    start: b"HTTP/1.1 200 OK\r\nServer: reactor\r\n",
    fields: b"Content-Type: text/plain\r\nContent-Length: 12\r\n",
    body: b"Hello, World",
};

pub const METHOD_NOT_ALLOWED: Reply = Reply {
    start: b"HTTP/1.1 405 Method Not Allowed\r\nServer: reactor\r\n",
    fields: b"Content-Type: text/plain\r\nContent-Length: 19\r\nAllow: GET, HEAD\r\n",
    body: b"Method Not Allowed\n",
};

pub const BAD_REQUEST: Reply = Reply {
    start: b"HTTP/1.1 400 Bad Request\r\nServer: reactor\r\n",
    fields: b"Content-Type: text/plain\r\nContent-Length: 12\r\n",
    body: b"Bad Request\n",
};

pub const LENGTH_REQUIRED: Reply = Reply {
    start: b"HTTP/1.1 411 Length Required\r\nServer: reactor\r\n",
    fields: b"Content-Type: text/plain\r\nContent-Length: 16\r\n",
    body: b"Length Required\n",
};

pub const HEAD_TOO_LARGE: Reply = Reply {
    start: b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: reactor\r\n",
    fields: b"Content-Type: text/plain\r\nContent-Length: 32\r\n",
    body: b"Request Header Fields Too Large\n",
};

impl Refusal {
    pub fn reply(self) -> &'static Reply {
        match self {
            Refusal::BadRequest => &BAD_REQUEST,
            Refusal::LengthRequired => &LENGTH_REQUIRED,
            Refusal::HeadTooLarge => &HEAD_TOO_LARGE,
        }
    }
}

impl Persistence {
    /// The `Connection` field, if any, and the blank line that ends the head.
    pub fn end_of_head(self) -> &'static [u8] {
        match self {
            Persistence::KeepAlive => b"\r\n",
            Persistence::KeepAlive10 => b"Connection: keep-alive\r\n\r\n",
            Persistence::Close => b"Connection: close\r\n\r\n",
        }
    }
}

/// Queues `reply`; the loop sends everything written during one callback
/// (all the responses to one read's pipelined requests) in one syscall.
pub fn write<S>(
    ctx: &mut Context<'_, S>,
    date: &[u8; DATE_LINE_LEN],
    reply: &Reply,
    persistence: Persistence,
    head: bool,
) {
    ctx.write(reply.start);
    ctx.write(date);
    ctx.write(reply.fields);
    ctx.write(persistence.end_of_head());
    if !head {
        ctx.write(reply.body);
    }
}
