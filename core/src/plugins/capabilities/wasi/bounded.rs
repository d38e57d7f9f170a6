//! `wasi:io/poll` and `wasi:io/streams` bounded by the call's guard.
//!
//! wasmtime-wasi's synchronous bindings run every operation that may wait
//! (`poll`, `pollable.block`, the `blocking-*` stream functions, dropping a
//! stream with a write in flight) as `in_tokio(future)`: nothing bounds the
//! wait, so a plugin with no grant at all could block on a monotonic-clock
//! pollable for an hour past its deadline. These are the same functions,
//! calling the same async implementations, with the future raced against
//! the call's remaining time and its cancellation ([`Guard::block_on`]).
//! They shadow wasmtime-wasi's definitions in the linker.

use crate::plugins::call::Guard;
use wasmtime::Result;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams as async_streams;
use wasmtime_wasi::p2::bindings::sync::io::poll::{self, Pollable};
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::{StreamError, StreamResult};

/// A WASI host view with the call's guard beside it.
pub(crate) struct Bounded<'a, V> {
    pub guard: &'a mut Guard,
    pub inner: V,
}

/// `wasi:io/*` over the call's resource table.
pub(crate) struct BoundedIo;

impl HasData for BoundedIo {
    type Data<'a> = Bounded<'a, &'a mut ResourceTable>;
}

/// An error type a host function can trap with.
pub(crate) trait TrapError {
    fn trap(err: wasmtime::Error) -> Self;
}

impl TrapError for wasmtime::Error {
    fn trap(err: wasmtime::Error) -> Self {
        err
    }
}

impl TrapError for StreamError {
    fn trap(err: wasmtime::Error) -> Self {
        StreamError::Trap(err)
    }
}

impl TrapError for wasmtime_wasi::p2::FsError {
    fn trap(err: wasmtime::Error) -> Self {
        wasmtime_wasi::p2::FsError::trap(err)
    }
}

/// [`Guard::block_on`] for a host operation with its own error type.
pub(crate) fn block<T, E: TrapError>(
    guard: &mut Guard,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    guard.block_on(fut).map_err(E::trap)?
}

impl poll::Host for Bounded<'_, &mut ResourceTable> {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> Result<Vec<u32>> {
        let table = &mut *self.inner;
        block(self.guard, async_poll::Host::poll(table, pollables))
    }
}

impl poll::HostPollable for Bounded<'_, &mut ResourceTable> {
    fn ready(&mut self, pollable: Resource<Pollable>) -> Result<bool> {
        let table = &mut *self.inner;
        block(self.guard, async_poll::HostPollable::ready(table, pollable))
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> Result<()> {
        let table = &mut *self.inner;
        block(self.guard, async_poll::HostPollable::block(table, pollable))
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> Result<()> {
        async_poll::HostPollable::drop(self.inner, pollable)
    }
}

impl streams::Host for Bounded<'_, &mut ResourceTable> {
    fn convert_stream_error(&mut self, err: StreamError) -> Result<streams::StreamError> {
        Ok(async_streams::Host::convert_stream_error(self.inner, err)?.into())
    }
}

impl streams::HostOutputStream for Bounded<'_, &mut ResourceTable> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> Result<()> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostOutputStream::drop(table, stream),
        )
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostOutputStream::check_write(self.inner, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostOutputStream::write(self.inner, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostOutputStream::blocking_write_and_flush(table, stream, bytes),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len),
        )
    }

    fn subscribe(&mut self, stream: Resource<OutputStream>) -> Result<Resource<Pollable>> {
        async_streams::HostOutputStream::subscribe(self.inner, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostOutputStream::write_zeroes(self.inner, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostOutputStream::flush(self.inner, Resource::new_borrow(stream.rep()))
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostOutputStream::blocking_flush(
                table,
                Resource::new_borrow(stream.rep()),
            ),
        )
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostOutputStream::splice(self.inner, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostOutputStream::blocking_splice(table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for Bounded<'_, &mut ResourceTable> {
    fn drop(&mut self, stream: Resource<InputStream>) -> Result<()> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostInputStream::drop(table, stream),
        )
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostInputStream::read(self.inner, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostInputStream::blocking_read(table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        self.guard.check().map_err(StreamError::Trap)?;
        async_streams::HostInputStream::skip(self.inner, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        let table = &mut *self.inner;
        block(
            self.guard,
            async_streams::HostInputStream::blocking_skip(table, stream, len),
        )
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> Result<Resource<Pollable>> {
        async_streams::HostInputStream::subscribe(self.inner, stream)
    }
}
