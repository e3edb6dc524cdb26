// The add-on's files, bundled as text by wrangler.toml's `[[rules]]` (see edge/routes/addon.ts).
declare module '*.py' {
  const text: string;
  export default text;
}
declare module '*.toml' {
  const text: string;
  export default text;
}
