// The methods our addon files (native/addon) add to node-llama-cpp's AddonContext: the one list.
// native/build.mjs reads it to register each (`InstanceMethod("steeringSet", &AddonContext::SteeringSet)`),
// binding.ts types each and checks that a loaded binary has them all.
export const ADDON_METHODS = [
  "steeringInfo",
  "steeringSet",
  "steeringClear",
  "steeringDiagnostics",
  "steeringTargetShare",
  "grammarCheck",
  "generationStart",
  "generationSubmit",
  "generationCancel",
  "tokenPieces",
  "tokenizeAsync",
] as const;

export type AddonMethod = (typeof ADDON_METHODS)[number];
