//! The storage server on the switch (docs/storage-protocol.md): the worker stage that answers block requests
//! (`stage`), the per-request logic (`service`), the images and users it serves (`version`), and where replies
//! go (`neighbors`). Reassembly and the anti-replay window are `switchyard-block-proto`, shared with `vbd`.

pub mod neighbors;
pub mod service;
pub mod stage;
pub mod version;
