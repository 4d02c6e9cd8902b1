// The page's settings in the address bar: `#key=value&…` (URLSearchParams syntax), so a
// reload or a shared link restores them. Owns the encoding only; which keys exist and
// how they map to the controls is app.js's.

/** The hash as { key: string value }; {} when there is none. */
export function readHash() {
  return Object.fromEntries(new URLSearchParams(location.hash.replace(/^#/, '')));
}

/** Replaces the hash by `values` without a history entry or a hashchange; returns the new hash. */
export function writeHash(values) {
  const hash = `#${new URLSearchParams(values).toString()}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
  return location.hash;
}
