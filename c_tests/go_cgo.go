// A Go program whose C code (through cgo) holds memory Go's own heap profile cannot see.
//
// goCaller has C keep 2048 blocks of 64 KiB (128 MiB) from c_alloc_site; goAlloc keeps
// 512 Go slices of 64 KiB (32 MiB); goBurn has C burn CPU in c_burn for 400 ms. If
// GO_HEAP_PROFILE names a file, the program writes its own heap profile there with
// runtime/pprof (after a GC, as `go tool pprof` users do). It then prints "ready" and:
//   exit    returns from main (Go ends with exit_group: no atexit)
//   wait    sleeps until a signal ends it (SIGTERM at its default action)
//   notify  catches SIGUSR2 and SIGTERM with os/signal, prints each, and returns from
//           main after SIGTERM
package main

/*
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *keep[4096];

__attribute__((noinline)) void *c_alloc_site(size_t n) {
	void *p = malloc(n);
	memset(p, 1, n);
	return p;
}

static void c_alloc_many(int count, size_t n) {
	for (int i = 0; i < count && i < 4096; i++)
		keep[i] = c_alloc_site(n);
}

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) double c_burn(double seconds) {
	volatile double x = 0;
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 10000; i++)
			x += i * 0.5;
	return x;
}
*/
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"
)

var goKept [][]byte

//go:noinline
func goCaller() { C.c_alloc_many(2048, 65536) }

//go:noinline
func goAlloc() {
	for i := 0; i < 512; i++ {
		goKept = append(goKept, make([]byte, 65536))
	}
}

//go:noinline
func goBurn() { C.c_burn(0.4) }

func main() {
	mode := "exit"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	var caught chan os.Signal
	if mode == "notify" {
		caught = make(chan os.Signal, 4)
		signal.Notify(caught, syscall.SIGUSR2, syscall.SIGTERM)
	}
	goCaller()
	goAlloc()
	goBurn()
	if path := os.Getenv("GO_HEAP_PROFILE"); path != "" {
		runtime.GC()
		f, err := os.Create(path)
		if err != nil {
			panic(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			panic(err)
		}
		f.Close()
	}
	fmt.Println("ready")
	switch mode {
	case "wait":
		time.Sleep(time.Hour)
	case "notify":
		for s := range caught {
			fmt.Println("caught", s)
			if s == syscall.SIGTERM {
				break
			}
		}
	}
	runtime.KeepAlive(goKept)
}
