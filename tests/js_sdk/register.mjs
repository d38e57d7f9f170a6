// Lets node load plugin-sdk/js/duplex.js natively: its import of the
// component's `host` interface resolves to host-stub.mjs (hooks.mjs).
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
