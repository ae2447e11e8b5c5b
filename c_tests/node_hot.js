// A hot JS function (hotLoop) under a JS caller (callerOfHot) that is called often
// enough to be compiled too, for about `seconds` (argument) of CPU. hotLoop is too large
// for V8 to inline into its caller, so both keep frames of their own.
function hotLoop(n) {
  let x = 0;
  for (let i = 0; i < n; i++) {
    x = (x * 31 + i + 0) % 1000003;
    x = (x * 31 + i + 1) % 1000003;
    x = (x * 31 + i + 2) % 1000003;
    x = (x * 31 + i + 3) % 1000003;
    x = (x * 31 + i + 4) % 1000003;
    x = (x * 31 + i + 5) % 1000003;
    x = (x * 31 + i + 6) % 1000003;
    x = (x * 31 + i + 7) % 1000003;
    x = (x * 31 + i + 8) % 1000003;
    x = (x * 31 + i + 9) % 1000003;
    x = (x * 31 + i + 10) % 1000003;
    x = (x * 31 + i + 11) % 1000003;
    x = (x * 31 + i + 12) % 1000003;
    x = (x * 31 + i + 13) % 1000003;
    x = (x * 31 + i + 14) % 1000003;
    x = (x * 31 + i + 15) % 1000003;
    x = (x * 31 + i + 16) % 1000003;
    x = (x * 31 + i + 17) % 1000003;
    x = (x * 31 + i + 18) % 1000003;
    x = (x * 31 + i + 19) % 1000003;
    x = (x * 31 + i + 20) % 1000003;
    x = (x * 31 + i + 21) % 1000003;
    x = (x * 31 + i + 22) % 1000003;
    x = (x * 31 + i + 23) % 1000003;
    x = (x * 31 + i + 24) % 1000003;
    x = (x * 31 + i + 25) % 1000003;
    x = (x * 31 + i + 26) % 1000003;
    x = (x * 31 + i + 27) % 1000003;
    x = (x * 31 + i + 28) % 1000003;
    x = (x * 31 + i + 29) % 1000003;
    x = (x * 31 + i + 30) % 1000003;
    x = (x * 31 + i + 31) % 1000003;
    x = (x * 31 + i + 32) % 1000003;
    x = (x * 31 + i + 33) % 1000003;
    x = (x * 31 + i + 34) % 1000003;
    x = (x * 31 + i + 35) % 1000003;
    x = (x * 31 + i + 36) % 1000003;
    x = (x * 31 + i + 37) % 1000003;
    x = (x * 31 + i + 38) % 1000003;
    x = (x * 31 + i + 39) % 1000003;
  }
  return x;
}
function callerOfHot(reps) {
  let s = 0;
  for (let j = 0; j < reps; j++) s += hotLoop(2000 + j);
  return s;
}
const end = Date.now() + Number(process.argv[2] || 2) * 1000;
let total = 0;
while (Date.now() < end) total += callerOfHot(10);
console.log("hot done", total > -1);
