//! One storage request as the client queues it (docs/vbd.md): an NBD command, or a 64 KiB piece of one, for
//! one image. The request id and the fragments come later, when it is sent.

use core::ops::Range;

use switchyard_wire::block::{BlockError, BlockRepr, Flags, Op, Status, FRAGMENT_GRANULE, INFO_LEN, MAX_IO_LEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoRequest {
    pub op: Op,
    pub image_id: u32,
    pub offset: u64,
    pub length: u32,
    /// NBD_CMD_FLAG_FUA (WRITE, TRIM, WRITE_ZEROES only).
    pub fua: bool,
    /// A WRITE's data, `length` bytes; empty otherwise.
    pub data: Vec<u8>,
}

impl IoRequest {
    pub fn read(image_id: u32, offset: u64, length: u32) -> IoRequest {
        IoRequest { op: Op::Read, image_id, offset, length, fua: false, data: Vec::new() }
    }

    pub fn write(image_id: u32, offset: u64, data: Vec<u8>, fua: bool) -> IoRequest {
        // A length past u32 cannot be said; `validate` refuses it as too long.
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        IoRequest { op: Op::Write, image_id, offset, length, fua, data }
    }

    pub fn flush(image_id: u32) -> IoRequest {
        IoRequest { op: Op::Flush, image_id, offset: 0, length: 0, fua: false, data: Vec::new() }
    }

    pub fn trim(image_id: u32, offset: u64, length: u32, fua: bool) -> IoRequest {
        IoRequest { op: Op::Trim, image_id, offset, length, fua, data: Vec::new() }
    }

    pub fn write_zeroes(image_id: u32, offset: u64, length: u32, fua: bool) -> IoRequest {
        IoRequest { op: Op::WriteZeroes, image_id, offset, length, fua, data: Vec::new() }
    }

    /// The image's size and flags; also the keepalive and the fence.
    pub fn info(image_id: u32) -> IoRequest {
        IoRequest { op: Op::Info, image_id, offset: 0, length: INFO_LEN, fua: false, data: Vec::new() }
    }

    /// The bytes of the image it touches (empty for FLUSH; INFO touches none but is given its 0..16).
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset.saturating_add(u64::from(self.length))
    }

    /// The request header (fragment offset and payload length 0) for `user_id` and `request_id`.
    pub fn header(&self, user_id: u32, request_id: u64) -> BlockRepr {
        BlockRepr {
            op: self.op,
            flags: if self.fua { Flags::FUA } else { Flags::NONE },
            user_id,
            image_id: self.image_id,
            request_id,
            offset: self.offset,
            length: self.length,
            fragment_offset: 0,
            payload_len: 0,
            status: Status::Ok,
        }
    }

    /// What the server would refuse (docs/storage-protocol.md, "What the server refuses"), so that it fails
    /// here with a named error instead: the field rules of `BlockRepr::validate`, and a WRITE's data being its
    /// length.
    pub fn validate(&self) -> Result<(), BlockError> {
        if self.op.has_request_data() && self.data.len() != self.length as usize {
            return Err(BlockError::MissingPayload);
        }
        if !self.op.has_request_data() && !self.data.is_empty() {
            return Err(BlockError::UnexpectedPayload);
        }
        // The first fragment stands for all of them: the header rules do not depend on which one.
        let first_fragment = if self.op.has_request_data() { self.length.min(FRAGMENT_GRANULE) as u16 } else { 0 };
        BlockRepr { payload_len: first_fragment, ..self.header(0, 0) }.validate()
    }
}

/// `offset..offset + length` cut into READ/WRITE pieces of at most `MAX_IO_LEN` (docs/storage-protocol.md:
/// clients split larger I/Os), as (offset, length) in order.
pub fn split_io(offset: u64, length: u32) -> impl Iterator<Item = (u64, u32)> {
    (0..length.div_ceil(MAX_IO_LEN)).map(move |piece| {
        let start = piece * MAX_IO_LEN;
        (offset.saturating_add(u64::from(start)), (length - start).min(MAX_IO_LEN))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_requests_pass() {
        assert_eq!(IoRequest::read(1, 0, MAX_IO_LEN).validate(), Ok(()));
        assert_eq!(IoRequest::read(1, 512, 1).validate(), Ok(()));
        assert_eq!(IoRequest::write(1, 0, vec![0; 100], true).validate(), Ok(()));
        assert_eq!(IoRequest::write(1, 0, vec![0; 65536], false).validate(), Ok(()));
        assert_eq!(IoRequest::flush(1).validate(), Ok(()));
        assert_eq!(IoRequest::trim(1, 0, u32::MAX, true).validate(), Ok(()));
        assert_eq!(IoRequest::write_zeroes(1, 4096, 1 << 30, false).validate(), Ok(()));
        assert_eq!(IoRequest::info(1).validate(), Ok(()));
        assert_eq!(IoRequest::info(1).range(), 0..16);
        assert_eq!(IoRequest::flush(1).range(), 0..0);
    }

    #[test]
    fn bad_requests_are_named() {
        assert_eq!(IoRequest::read(1, 0, MAX_IO_LEN + 1).validate(), Err(BlockError::IoTooLong));
        assert_eq!(IoRequest::read(1, 0, 0).validate(), Err(BlockError::EmptyIo));
        assert_eq!(IoRequest::read(1, u64::MAX, 1).validate(), Err(BlockError::RangeOverflow));
        assert_eq!(IoRequest::write(1, 0, vec![0; 65537], false).validate(), Err(BlockError::IoTooLong));
        assert_eq!(IoRequest::write(1, 0, Vec::new(), false).validate(), Err(BlockError::EmptyIo));
        assert_eq!(IoRequest::trim(1, 0, 0, false).validate(), Err(BlockError::EmptyIo));
        let mut short = IoRequest::write(1, 0, vec![0; 10], false);
        short.length = 11;
        assert_eq!(short.validate(), Err(BlockError::MissingPayload));
        let mut read_with_data = IoRequest::read(1, 0, 10);
        read_with_data.data = vec![1];
        assert_eq!(read_with_data.validate(), Err(BlockError::UnexpectedPayload));
        let mut fua_read = IoRequest::read(1, 0, 10);
        fua_read.fua = true;
        assert_eq!(fua_read.validate(), Err(BlockError::FuaNotAllowed));
    }

    #[test]
    fn large_ios_are_split_at_64_kib() {
        assert_eq!(split_io(100, 10).collect::<Vec<_>>(), [(100, 10)]);
        assert_eq!(split_io(0, MAX_IO_LEN).collect::<Vec<_>>(), [(0, MAX_IO_LEN)]);
        assert_eq!(split_io(7, MAX_IO_LEN + 1).collect::<Vec<_>>(), [(7, MAX_IO_LEN), (7 + 65536, 1)]);
        let pieces: Vec<_> = split_io(1 << 20, 32 << 20).collect();
        assert_eq!(pieces.len(), 512);
        assert!(pieces.windows(2).all(|p| p[0].0 + u64::from(p[0].1) == p[1].0));
        assert_eq!(split_io(0, 0).count(), 0);
    }
}
