// A carved object in WebGL2: a cube (or a sphere) with one corner cut away, its colours taken from a
// solid texture uploaded as a 3D texture, so the cut faces show the volume's inside (as
// texport/textures/carve.py renders it for the benchmarks, and as Gutierrez et al. 2020 show theirs).
//
// Each pixel casts an orthographic ray. The object is the shape less the octant x, y, z > 0, i.e. the
// union of its seven other octants, each convex (a box, or the ball within the octant's box), so the
// first surface a ray meets is its nearest entry into any of them: exact, no ray marching. The object
// spans [-1, 1]^3, the volume's texture coordinates are (p + 1) / 2, sampled trilinearly and wrapped
// (the volume is periodic), with carve.py's Lambert shading and ambient term.
// tests/test_web.py renders the same scene in numpy from texport's volume and compares the pixels:
// keep the two in step.

export const TILT = 30; // degrees the object leans towards the viewer, so its top shows
export const EXTENT = 1.8; // half the view's width in object units: the cube's corners reach sqrt(3)
export const SHAPES = ["cube", "sphere"];

const VERTEX = `#version 300 es
void main() { // one triangle over the whole viewport
  vec2 corner = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}`;

const FRAGMENT = `#version 300 es
precision highp float;
precision highp sampler3D;
uniform sampler3D volume;
uniform float side;   // the canvas's side in pixels
uniform float turn;   // radians about the vertical axis; 0: the cut corner faces the viewer
uniform bool sphere;
out vec4 colour;

void main() {
  float tilt = radians(${TILT.toFixed(1)});
  float ct = cos(tilt), st = sin(tilt), ca = cos(turn - radians(45.0)), sa = sin(turn - radians(45.0));
  // object -> view: the turn about y (less 45 degrees: turn 0 shows the cut corner head-on), then the
  // lean about x; GLSL matrices are given column by column
  mat3 rotation = mat3(1.0, 0.0, 0.0, 0.0, ct, st, 0.0, -st, ct) * mat3(ca, 0.0, -sa, 0.0, 1.0, 0.0, sa, 0.0, ca);
  mat3 toObject = transpose(rotation);
  vec2 uv = (gl_FragCoord.xy / side * 2.0 - 1.0) * ${EXTENT.toFixed(1)};
  vec3 o = toObject * vec3(uv, 3.0), d = toObject * vec3(0.0, 0.0, -1.0);
  d = mix(d, vec3(1e-7), lessThan(abs(d), vec3(1e-7))); // no division by zero below
  vec3 inv = 1.0 / d;
  float best = 1e9;
  vec3 normal = vec3(0.0);
  for (int k = 0; k < 7; k++) { // octant k: bit i set = the positive half of axis i; 7 (+++) is cut away
    vec3 lo = vec3(float(k & 1), float((k >> 1) & 1), float((k >> 2) & 1)) - 1.0;
    vec3 t0 = (lo - o) * inv, t1 = (lo + 1.0 - o) * inv;
    vec3 tn = min(t0, t1), tf = max(t0, t1);
    float enter = max(max(tn.x, tn.y), tn.z), leave = min(min(tf.x, tf.y), tf.z);
    vec3 n = -sign(d) * vec3(equal(tn, vec3(enter))); // the face it enters by
    if (sphere) { // the ball's chord [s0, s1] on this ray (d is a unit vector; q, the point nearest the
      float b = dot(o, d);       // centre, keeps the discriminant exact near the silhouette)
      vec3 q = o - b * d;
      float disc = 1.0 - dot(q, q);
      if (disc < 0.0) continue;
      float s0 = -b - sqrt(disc), s1 = -b + sqrt(disc);
      if (s0 > enter) { enter = s0; n = o + s0 * d; }
      leave = min(leave, s1);
    }
    if (enter <= leave && enter < best) { best = enter; normal = n; }
  }
  if (best == 1e9) { colour = vec4(1.0); return; } // the background: white
  vec3 p = o + best * d;
  float shade = 0.45 + 0.55 * max(dot(normalize(rotation * normal), normalize(vec3(0.5, 0.8, 0.9))), 0.0);
  colour = vec4(textureLod(volume, p * 0.5 + 0.5, 0.0).rgb * shade, 1.0);
}`;

/**
 * A renderer on `canvas` (square): upload(rgba, side) takes the volume as RGBA bytes, x fastest then
 * y then z; draw(degrees, shape) draws it turned by that angle. Throws, saying why, without WebGL2.
 */
export function carver(canvas) {
  const gl = canvas.getContext("webgl2", { preserveDrawingBuffer: true, antialias: false });
  if (!gl) throw new Error("this browser gives no WebGL2 context, which the Solid tab's 3D texture needs");
  const program = useProgram(gl, VERTEX, FRAGMENT);
  gl.bindTexture(gl.TEXTURE_3D, gl.createTexture());
  for (const [name, value] of [["TEXTURE_MIN_FILTER", "LINEAR"], ["TEXTURE_MAG_FILTER", "LINEAR"], ["TEXTURE_WRAP_S", "REPEAT"],
                               ["TEXTURE_WRAP_T", "REPEAT"], ["TEXTURE_WRAP_R", "REPEAT"]]) {
    gl.texParameteri(gl.TEXTURE_3D, gl[name], gl[value]);
  }
  const uniform = (name) => gl.getUniformLocation(program, name);
  return {
    upload(rgba, side) {
      gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
      gl.texImage3D(gl.TEXTURE_3D, 0, gl.RGBA8, side, side, side, 0, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
    },
    draw(degrees, shape) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.uniform1f(uniform("side"), canvas.width);
      gl.uniform1f(uniform("turn"), (degrees * Math.PI) / 180);
      gl.uniform1i(uniform("sphere"), shape === "sphere" ? 1 : 0);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    },
  };
}

/** Compile and link a vertex and a fragment shader (WebGL or WebGL2), make the program current and return
 * it; a compile or link error throws with the driver's log. */
export function useProgram(gl, vertex, fragment) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vertex], [gl.FRAGMENT_SHADER, fragment]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  gl.useProgram(program);
  return program;
}
