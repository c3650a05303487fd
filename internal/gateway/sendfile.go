package gateway

import (
	"io"
	"net"
	"os"
)

// sendfileListener hands the management gateway's HTTP server unix
// connections that send whole cached blobs with sendfile(2): net/http
// does so on TCP by itself, but a *net.UnixConn is no io.ReaderFrom, so
// every blob would otherwise be copied through the process.
type sendfileListener struct{ net.Listener }

func (l sendfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if uc, ok := c.(*net.UnixConn); ok {
		return sendfileConn{uc}, nil
	}
	return c, err
}

type sendfileConn struct{ *net.UnixConn }

// ReadFrom sends the rest of a file with sendfile(2) when r is the file,
// or the file limited to at least what is left of it (as ServeContent
// passes it); anything else is copied.
func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	lr, limited := r.(*io.LimitedReader)
	src := r
	if limited {
		src = lr.R
	}
	f, ok := src.(*os.File)
	if ok && limited {
		pos, err := f.Seek(0, io.SeekCurrent)
		st, serr := f.Stat()
		ok = err == nil && serr == nil && st.Size()-pos <= lr.N
	}
	if !ok {
		return io.Copy(struct{ io.Writer }{c.UnixConn}, r)
	}
	n, err := f.WriteTo(c.UnixConn) // sendfile(2) into the socket
	if limited {
		lr.N -= n
	}
	return n, err
}
