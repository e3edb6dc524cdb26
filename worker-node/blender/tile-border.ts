/**
 * Split stills: cutting one frame into tiles that separate Blender processes render with a
 * cropped render border, so a node can stitch the tiles back into the whole image.
 *
 * Rectangles here are in pixels of the final image with y counted from the TOP, as in the
 * saved PNG; Blender's render border counts y from the bottom, and tileBorderExpr converts.
 *
 * How Blender 3.4 turns a border into pixels (checked in tiles-stitch.test.ts): the render
 * rectangle is `xmin = (int)(border_min_x * winx)`, `xmax = (int)(border_max_x * winx)` and the
 * same for y, truncating floats toward zero, where winx = resolution_x * percentage / 100 in
 * integer arithmetic; Cycles computes its buffer window the same way. Borders are stored as
 * 32-bit floats, so `x / winx` can land a hair below x and truncate to x - 1. Putting every
 * inner edge on a pixel's centre, (x + 0.5) / winx, keeps a margin of half a pixel on both
 * sides, far beyond float error; the image's own edges are exactly 0 and 1.
 */

/** A tile's pixel rectangle: x from the left, y from the top of the final image. */
export interface TileRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One tile of a split still; `index` is its position in tileGrid's answer. */
export interface Tile {
  index: number;
  rect: TileRect;
}

/**
 * Splits a `width` x `height` image into exactly `n` tiles that cover it without overlap,
 * each an integer pixel rectangle of nearly the same area. Rows are chosen so tiles come out
 * close to square; when n does not factor that way, rows hold different numbers of tiles
 * (n = 3 on a landscape image: a row of 2 over a row of 1) and row heights follow their tile
 * counts, so no node gets a tile much bigger than another. Tiles are ordered row by row from
 * the top, left to right. Throws when a tile would have no pixels.
 */
export function tileGrid(width: number, height: number, n: number): Tile[] {
  for (const [name, value] of [
    ['width', width],
    ['height', height],
    ['tile count', n],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number of at least 1, got ${value}`);
  }
  // Square tiles of equal area: rows / cols = height / width with rows * cols = n.
  const rows = Math.min(n, height, Math.max(1, Math.round(Math.sqrt((n * height) / width))));
  const tiles: Tile[] = [];
  let tilesBefore = 0;
  for (let row = 0; row < rows; row++) {
    // Spread the remainder over the first rows: 7 tiles in 2 rows -> 4 + 3.
    const cols = Math.floor(n / rows) + (row < n % rows ? 1 : 0);
    const y0 = Math.round((height * tilesBefore) / n);
    const y1 = Math.round((height * (tilesBefore + cols)) / n);
    for (let col = 0; col < cols; col++) {
      const x0 = Math.round((width * col) / cols);
      const x1 = Math.round((width * (col + 1)) / cols);
      if (x1 <= x0 || y1 <= y0) throw new Error(`cannot split ${width}x${height} pixels into ${n} tiles of at least one pixel each`);
      tiles.push({ index: tiles.length, rect: { x: x0, y: y0, width: x1 - x0, height: y1 - y0 } });
    }
    tilesBefore += cols;
  }
  return tiles;
}

/**
 * A one-line Python snippet for `--python-expr` (see buildRenderArgs' pythonExprs) that makes
 * Blender render exactly the pixels of `rect` of a `width` x `height` frame and save only
 * them (crop to border). It fails the render, with a RuntimeError that says why, when the
 * tiles could not be stitched into what one whole render gives:
 * - the scene does not render at width x height (resolution times percentage): a border
 *   planned for another size would cut the wrong pixels;
 * - the engine is not Cycles: Eevee's bloom, ambient occlusion and screen-space reflections
 *   look at neighbouring pixels, so its tiles show seams;
 * - the compositor would run nodes other than Render Layers, Composite and Viewer: it only
 *   ever sees one tile, so a Glare or Blur node stops at the tile's edge.
 *
 * It also turns off what makes a Cycles pixel depend on pixels outside its tile (found by
 * comparing stitched tiles with whole renders, see tiles-stitch.test.ts):
 * - adaptive sampling: its convergence test filters each pixel's error with its
 *   neighbours', so pixels along a tile edge stop at other sample counts (up to 14/255 off);
 * - dithering: its noise is a function of the pixel's position in the image being saved,
 *   which for a cropped tile starts at the tile's corner (1-2/255 off nearly everywhere).
 * A whole render that must equal the stitched tiles needs the same two settings off; that
 * is splitStillExpr.
 */
export function tileBorderExpr(rect: TileRect, width: number, height: number): string {
  checkRect(rect, width, height);
  // Blender's y runs up from the bottom edge; the rect's runs down from the top.
  const bottomPx = height - (rect.y + rect.height);
  const topPx = height - rect.y;
  const minX = borderEdge(rect.x, width);
  const maxX = borderEdge(rect.x + rect.width, width);
  const minY = borderEdge(bottomPx, height);
  const maxY = borderEdge(topPx, height);
  return [
    'import bpy',
    // Python has no raise expression and a one-line snippet cannot hold an if statement; a
    // generator's throw() raises from inside an expression.
    'fail = lambda message: (_ for _ in ()).throw(RuntimeError("split still: " + message))',
    's = bpy.context.scene',
    'r = s.render',
    'w, h = r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100',
    `(w, h) == (${width}, ${height}) or fail("the scene renders %dx%d pixels but its tiles were planned for ${width}x${height}" % (w, h))`,
    `r.engine == "CYCLES" or fail("only Cycles renders tiles that stitch without seams; this scene renders with " + r.engine)`,
    'nodes = [n.name for n in s.node_tree.nodes if n.type not in {"R_LAYERS", "COMPOSITE", "VIEWER", "REROUTE", "FRAME"}] if r.use_compositing and s.use_nodes and s.node_tree else []',
    'nodes == [] or fail("the compositor would see one tile at a time (nodes %s); turn compositing off or render the frame whole" % ", ".join(nodes))',
    SPLIT_STILL_SETTINGS,
    'r.use_border = True',
    'r.use_crop_to_border = True',
    `r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = ${minX}, ${maxX}, ${minY}, ${maxY}`,
  ].join('; ');
}

/** Settings that make Cycles pixels independent of their neighbours; see tileBorderExpr. */
const SPLIT_STILL_SETTINGS = 'r.dither_intensity = 0.0; s.cycles.use_adaptive_sampling = False';

/**
 * The part of tileBorderExpr that changes the picture (no adaptive sampling, no dithering),
 * for rendering a whole frame that must equal the stitched tiles pixel for pixel.
 */
export const splitStillExpr = `import bpy; s = bpy.context.scene; r = s.render; ${SPLIT_STILL_SETTINGS}`;

/** A border coordinate for a pixel edge: exact at the image's edges, a pixel centre inside. */
function borderEdge(edgePx: number, sizePx: number): string {
  if (edgePx === 0) return '0.0';
  if (edgePx === sizePx) return '1.0';
  // repr of a double: Python parses it back to the same number.
  return String((edgePx + 0.5) / sizePx);
}

function checkRect(rect: TileRect, width: number, height: number): void {
  const whole = [rect.x, rect.y, rect.width, rect.height, width, height].every(Number.isInteger);
  if (!whole || rect.width < 1 || rect.height < 1 || rect.x < 0 || rect.y < 0 || rect.x + rect.width > width || rect.y + rect.height > height) {
    throw new Error(`tile ${JSON.stringify(rect)} is not a non-empty pixel rectangle inside ${width}x${height}`);
  }
}
