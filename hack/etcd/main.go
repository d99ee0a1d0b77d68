// Command etcd is the etcd server, built from the published go.etcd.io/etcd/server/v3
// module. etcd's own main module (go.etcd.io/etcd/v3) uses local replace directives and
// so cannot be built with `go install`; etcdmain.Main is what its main() calls.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
