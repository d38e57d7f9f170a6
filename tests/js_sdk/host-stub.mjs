// The `host` interface, natively: what was logged, for the tests to read.
export const logged = [];
export function log(level, message) {
  logged.push([level, message]);
}
export function progress(percent, message) {
  logged.push(['progress', `${percent}% ${message}`]);
}
