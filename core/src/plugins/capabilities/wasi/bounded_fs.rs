//! `wasi:filesystem/types` bounded by the call's guard.
//!
//! Only reachable with a `dirs` grant (without one the plugin has no
//! descriptor to call these on). wasmtime-wasi runs every file operation on
//! a blocking thread and waits for it with `in_tokio(..)`: an `open-at` of a
//! FIFO, a read of one, or a file on a hung network mount would hold the
//! call forever. These are wasmtime-wasi's synchronous implementations
//! (`src/p2/host/filesystem/sync.rs` of wasmtime-wasi 48.0.8, Apache-2.0
//! WITH LLVM-exception), unchanged except that each wait is raced against
//! the call's remaining time and its cancellation; they shadow the originals
//! in the linker.

use super::bounded::{Bounded, block};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types as async_filesystem;
use wasmtime_wasi::p2::bindings::sync::filesystem::types as sync_filesystem;
use wasmtime_wasi::p2::bindings::sync::io::streams;

/// `wasi:filesystem/types` over the call's WASI context.
pub(crate) struct BoundedFs;

impl HasData for BoundedFs {
    type Data<'a> = Bounded<'a, WasiFilesystemCtxView<'a>>;
}

impl sync_filesystem::Host for Bounded<'_, WasiFilesystemCtxView<'_>> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<sync_filesystem::ErrorCode> {
        Ok(async_filesystem::Host::convert_error_code(&mut self.inner, err)?.into())
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<streams::Error>,
    ) -> wasmtime::Result<Option<sync_filesystem::ErrorCode>> {
        Ok(async_filesystem::Host::filesystem_error_code(&mut self.inner, err)?.map(|e| e.into()))
    }
}

impl sync_filesystem::HostDescriptor for Bounded<'_, WasiFilesystemCtxView<'_>> {
    fn advise(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
        len: sync_filesystem::Filesize,
        advice: sync_filesystem::Advice,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::advise(fs, fd, offset, len, advice.into()).await
            })
        }
    }

    fn sync_data(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::sync_data(fs, fd).await
            })
        }
    }

    fn get_flags(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorFlags> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::get_flags(fs, fd).await
            })
        }?
        .into())
    }

    fn get_type(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorType> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::get_type(fs, fd).await
            })
        }?
        .into())
    }

    fn set_size(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        size: sync_filesystem::Filesize,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::set_size(fs, fd, size).await
            })
        }
    }

    fn set_times(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        atim: sync_filesystem::NewTimestamp,
        mtim: sync_filesystem::NewTimestamp,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::set_times(fs, fd, atim.into(), mtim.into()).await
            })
        }
    }

    fn read(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        len: sync_filesystem::Filesize,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::read(fs, fd, len, offset).await
            })
        }
    }

    fn write(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        buf: Vec<u8>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<sync_filesystem::Filesize> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::write(fs, fd, buf, offset).await
            })
        }
    }

    fn read_directory(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<Resource<sync_filesystem::DirectoryEntryStream>> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::read_directory(fs, fd).await
            })
        }
    }

    fn sync(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::sync(fs, fd).await
            })
        }
    }

    fn create_directory_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::create_directory_at(fs, fd, path).await
            })
        }
    }

    fn stat(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorStat> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::stat(fs, fd).await
            })
        }?
        .into())
    }

    fn stat_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
    ) -> FsResult<sync_filesystem::DescriptorStat> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::stat_at(fs, fd, path_flags.into(), path).await
            })
        }?
        .into())
    }

    fn set_times_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
        atim: sync_filesystem::NewTimestamp,
        mtim: sync_filesystem::NewTimestamp,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::set_times_at(
                    fs,
                    fd,
                    path_flags.into(),
                    path,
                    atim.into(),
                    mtim.into(),
                )
                .await
            })
        }
    }

    fn link_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        // TODO delete the path flags from this function
        old_path_flags: sync_filesystem::PathFlags,
        old_path: String,
        new_descriptor: Resource<sync_filesystem::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::link_at(
                    fs,
                    fd,
                    old_path_flags.into(),
                    old_path,
                    new_descriptor,
                    new_path,
                )
                .await
            })
        }
    }

    fn open_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
        oflags: sync_filesystem::OpenFlags,
        flags: sync_filesystem::DescriptorFlags,
    ) -> FsResult<Resource<sync_filesystem::Descriptor>> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::open_at(
                    fs,
                    fd,
                    path_flags.into(),
                    path,
                    oflags.into(),
                    flags.into(),
                )
                .await
            })
        }
    }

    fn drop(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> wasmtime::Result<()> {
        async_filesystem::HostDescriptor::drop(&mut self.inner, fd)
    }

    fn readlink_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::readlink_at(fs, fd, path).await
            })
        }
    }

    fn remove_directory_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::remove_directory_at(fs, fd, path).await
            })
        }
    }

    fn rename_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        old_path: String,
        new_fd: Resource<sync_filesystem::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::rename_at(fs, fd, old_path, new_fd, new_path)
                    .await
            })
        }
    }

    fn symlink_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::symlink_at(fs, fd, src_path, dest_path).await
            })
        }
    }

    fn unlink_file_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::unlink_file_at(fs, fd, path).await
            })
        }
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<Resource<streams::InputStream>> {
        async_filesystem::HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<Resource<streams::OutputStream>> {
        async_filesystem::HostDescriptor::write_via_stream(&mut self.inner, fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<Resource<streams::OutputStream>> {
        async_filesystem::HostDescriptor::append_via_stream(&mut self.inner, fd)
    }

    fn is_same_object(
        &mut self,
        a: Resource<sync_filesystem::Descriptor>,
        b: Resource<sync_filesystem::Descriptor>,
    ) -> wasmtime::Result<bool> {
        {
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::is_same_object(fs, a, b).await
            })
        }
    }
    fn metadata_hash(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::MetadataHashValue> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::metadata_hash(fs, fd).await
            })
        }?
        .into())
    }
    fn metadata_hash_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
    ) -> FsResult<sync_filesystem::MetadataHashValue> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDescriptor::metadata_hash_at(fs, fd, path_flags.into(), path)
                    .await
            })
        }?
        .into())
    }
}

impl sync_filesystem::HostDirectoryEntryStream for Bounded<'_, WasiFilesystemCtxView<'_>> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<sync_filesystem::DirectoryEntryStream>,
    ) -> FsResult<Option<sync_filesystem::DirectoryEntry>> {
        Ok({
            let Bounded { guard, inner: fs } = self;
            block(guard, async move {
                async_filesystem::HostDirectoryEntryStream::read_directory_entry(fs, stream).await
            })
        }?
        .map(|e| e.into()))
    }

    fn drop(
        &mut self,
        stream: Resource<sync_filesystem::DirectoryEntryStream>,
    ) -> wasmtime::Result<()> {
        async_filesystem::HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
