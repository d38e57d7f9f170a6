//! `host`: log lines and progress, granted to every plugin.
//!
//! Grant: none (always there). Wiring: the `duplex:plugin/host` interface
//! (and `types`, which only defines the contract's types). Per call: nothing
//! of its own; lines and progress go to the call's scope, within its caps.

use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts};
use crate::plugins::bindings::{self, duplex::plugin as wit};
use crate::plugins::call::{CallScope, HostState};
use crate::plugins::types::LogSource;
use wasmtime::component::{HasData, Linker};

pub(crate) struct Host;

/// The view the `host` functions get of a call.
pub(crate) struct HostView<'a> {
    scope: &'a mut CallScope,
}

impl HasData for Host {
    type Data<'a> = HostView<'a>;
}

impl Capability for Host {
    const NAME: &'static str = "host";
    type Grant = ();
    type Loaded = ();
    type Call = ();

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        fn view(state: &mut HostState) -> HostView<'_> {
            HostView {
                scope: Parts::<Host>::parts(state).0,
            }
        }
        wit::types::add_to_linker::<HostState, Host>(linker, view)?;
        wit::host::add_to_linker::<HostState, Host>(linker, view)
    }

    fn check(_: &(), _: &PluginFacts<'_>) -> Vec<GrantProblem> {
        Vec::new()
    }

    fn load(_: &(), _: &PluginFacts<'_>) -> Result<(), LoadFailure> {
        Ok(())
    }

    fn start(_: Option<&()>, _: &mut CallScope) {}
}

impl wit::types::Host for HostView<'_> {}

impl wit::host::Host for HostView<'_> {
    fn log(&mut self, level: wit::types::LogLevel, message: String) -> wasmtime::Result<()> {
        self.scope.guard.check()?;
        self.scope
            .log
            .push(bindings::log_level(level), LogSource::Plugin, &message);
        Ok(())
    }

    fn progress(&mut self, percent: u8, message: String) -> wasmtime::Result<()> {
        self.scope.guard.check()?;
        self.scope.progress.report(percent, &message);
        Ok(())
    }
}
