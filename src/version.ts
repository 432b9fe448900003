/** Kiln's version, as package.json states it (test/layout.test.ts checks they agree): written
 *  into ONNX files and printed by `kiln --version`, with no JSON import that a build would copy. */
export const VERSION = "0.2.0";
