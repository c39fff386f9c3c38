//! The vendor APIs Engage speaks, one module each: what the vendor's own
//! clients send, translated to the domain, and the domain's answer rendered
//! as the vendor renders it (envelopes, status codes, error numbers). Where
//! Engage deliberately differs from a vendor, `docs/compatibility.md` says so.

pub mod annex;
pub mod attentive;
pub mod bsg;
pub mod playbasis;
pub mod playblazer;
pub mod playsms;
