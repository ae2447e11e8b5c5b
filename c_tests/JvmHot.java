// A hot Java method (hotLoop, kept out of its caller by -XX:CompileCommand=dontinline) under
// a Java caller (callerOfHot) called often enough to be compiled too, for about `seconds`
// (argument) of wall time; prints the sum, so that nothing is optimised away.
public class JvmHot {
    static long hotLoop(long n) {
        long x = 1;
        for (long i = 0; i < n; i++) {
            x = x * 6364136223846793005L + 1442695040888963407L;
            x ^= (x >>> 17);
        }
        return x;
    }

    static long callerOfHot(int rounds) {
        long s = 0;
        for (int r = 0; r < rounds; r++) {
            s += hotLoop(20_000);
        }
        return s;
    }

    public static void main(String[] args) {
        double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 2;
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long s = 0;
        while (System.nanoTime() < end) {
            s += callerOfHot(10);
        }
        System.out.println("sum " + s);
    }
}
