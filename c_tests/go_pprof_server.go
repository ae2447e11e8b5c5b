// Go's own net/http/pprof, for comparing rprof's text formats with what Go writes: serves on
// a free loopback port (printed), keeps 64 blocks of 64 KiB, runs until stdin closes.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

var keep [][]byte

func main() {
	runtime.MemProfileRate = 512 * 1024
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	for i := 0; i < 64; i++ {
		keep = append(keep, make([]byte, 65536))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(l.Addr().String())
	go http.Serve(l, nil)
	io.Copy(io.Discard, os.Stdin)
}
