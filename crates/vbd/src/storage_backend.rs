//! `StorageBackend`: an NBD export over an image on a storage server (docs/vbd.md). Each NBD command becomes
//! storage requests on the user's `StorageClient`: READ and WRITE in 64 KiB pieces (all queued at once, so
//! the scheduler sees them together), the rest as one request each. WRITE_ZEROES with NO_HOLE is sent as a
//! plain WRITE_ZEROES: the protocol has no NO_HOLE, the server decides how to zero.

use switchyard_wire::block::{ImageInfo, MAX_IO_LEN};

use super::backend::{BackendError, BlockBackend, Zeroing};
use super::storage_client::{Pending, StorageClient};
use super::storage_engine::IoOutput;
use super::storage_error::StorageError;
use super::storage_request::{split_io, IoRequest};

/// One attached image.
pub struct StorageBackend {
    client: StorageClient,
    image_id: u32,
    info: ImageInfo,
}

impl StorageBackend {
    /// Asks the server for the image's size and flags (INFO); a refusal is the server's status.
    pub async fn attach(client: StorageClient, image_id: u32) -> Result<StorageBackend, StorageError> {
        let info = client.attach(image_id).await?;
        Ok(StorageBackend { client, image_id, info })
    }

    pub fn image_id(&self) -> u32 {
        self.image_id
    }

    /// What the server said at attach.
    pub fn info(&self) -> ImageInfo {
        self.info
    }

    async fn execute(&self, request: IoRequest) -> Result<(), BackendError> {
        self.client.execute(request).await?;
        Ok(())
    }
}

/// Waits for every piece; the first error, if any.
async fn wait_all(pending: Vec<Pending>) -> Result<Vec<IoOutput>, StorageError> {
    let mut outputs = Vec::with_capacity(pending.len());
    let mut first_error = None;
    for piece in pending {
        match piece.wait().await {
            Ok(output) => outputs.push(output),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(outputs), Err)
}

impl BlockBackend for StorageBackend {
    fn size(&self) -> u64 {
        self.info.size
    }

    fn read_only(&self) -> bool {
        self.info.is_read_only()
    }

    /// One scheduler per user: a FLUSH waits for every earlier write to the image, whichever connection sent
    /// it, and the server flushes the whole image.
    fn can_multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, length: u32) -> Result<Vec<u8>, BackendError> {
        let mut pending = Vec::new();
        for (piece_offset, piece_length) in split_io(offset, length) {
            pending.push(self.client.submit(IoRequest::read(self.image_id, piece_offset, piece_length)).await);
        }
        let mut data = Vec::with_capacity(length as usize);
        for output in wait_all(pending).await? {
            match output {
                // The engine's reassembly gives exactly the piece's length.
                IoOutput::Data(piece) if data.is_empty() && piece.len() == length as usize => return Ok(piece),
                IoOutput::Data(piece) => data.extend_from_slice(&piece),
                IoOutput::Done | IoOutput::Info(_) => return Err(BackendError::ShortRead { wanted: length, got: 0 }),
            }
        }
        Ok(data)
    }

    async fn write(&self, offset: u64, data: Vec<u8>, fua: bool) -> Result<(), BackendError> {
        if data.len() <= MAX_IO_LEN as usize {
            if data.is_empty() {
                return Ok(());
            }
            return self.execute(IoRequest::write(self.image_id, offset, data, fua)).await;
        }
        let length = u32::try_from(data.len()).map_err(|_| BackendError::Invalid("write longer than 4 GiB"))?;
        let mut pending = Vec::new();
        for (piece_offset, piece_length) in split_io(offset, length) {
            let start = (piece_offset - offset) as usize;
            let piece = data[start..start + piece_length as usize].to_vec();
            pending.push(self.client.submit(IoRequest::write(self.image_id, piece_offset, piece, fua)).await);
        }
        wait_all(pending).await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.execute(IoRequest::flush(self.image_id)).await
    }

    async fn trim(&self, offset: u64, length: u32, fua: bool) -> Result<(), BackendError> {
        if length == 0 {
            return Ok(());
        }
        self.execute(IoRequest::trim(self.image_id, offset, length, fua)).await
    }

    async fn write_zeroes(&self, offset: u64, length: u32, _zeroing: Zeroing, fua: bool) -> Result<(), BackendError> {
        if length == 0 {
            return Ok(());
        }
        self.execute(IoRequest::write_zeroes(self.image_id, offset, length, fua)).await
    }
}
