// Module resolution hooks for the native tests: `duplex:plugin/host@0.1.0`
// (what a component imports) is the stub beside this file.
export async function resolve(specifier, context, next) {
  if (specifier === 'duplex:plugin/host@0.1.0') {
    return { url: new URL('./host-stub.mjs', import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
