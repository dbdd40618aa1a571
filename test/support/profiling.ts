// Fixtures shared by the head-profiling tests (test/unit/profiles/, test/model/profiles/profiler.test.ts,
// test/process/cli/profile.test.ts).
import type { Task, TaskExample } from "../../src/profiles/tasks.js";

/** PASTA's alpha in the profiling tests */
export const ALPHA = 0.01;

/**
 * A task stories260K can do (it only knows children's stories): two children with two things; the
 * story continues about the first child's thing, and the sentence saying what it is gets emphasized.
 * Half of the examples put the other child's sentence first, half last.
 */
export function storyTask(): Task {
  const names = [
    ["Lily", "Tom"],
    ["Ben", "Sue"],
    ["Mia", "Max"],
    ["Anna", "Sam"],
    ["Lucy", "Jack"],
    ["Timmy", "Sara"],
    ["Emma", "Leo"],
    ["Kitty", "Bob"],
  ] as const;
  const things = [
    ["red ball", "blue kite"],
    ["big dog", "small cat"],
    ["green hat", "yellow box"],
    ["new toy", "old book"],
    ["pink doll", "brown bear"],
    ["shiny car", "soft bed"],
    ["little bird", "big fish"],
    ["sweet cake", "cold milk"],
  ] as const;
  const examples: TaskExample[] = [];
  for (let i = 0; i < 16; i++) {
    const [a, b] = names[i % 8]!;
    const [x, y] = things[(i * 3) % 8]!;
    const key = `${a} had a ${x}.`;
    const other = `${b} had a ${y}.`;
    const story = i % 2 === 0 ? `${key} ${other}` : `${other} ${key}`;
    examples.push({ context: `${story} ${a} loved the`, emphasis: key, target: ` ${x.split(" ")[1]}` });
  }
  return { name: "stories", examples };
}
