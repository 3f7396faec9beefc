//! How a request is answered, whoever handles it: the one body type and the
//! response builders ([`response`]), and every refusal with its status code
//! and JSON error envelope ([`api_error`]). It names no other module of the
//! crate, so the edge, intake and delivery can all answer in it.

pub(crate) mod api_error;
pub(crate) mod response;
