package repo

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

// Identity headers: the tenant gateway sets Tenant and Client (after
// dropping whatever the VM sent), the management gateway adds Signature.
const (
	HeaderTenant    = "X-Drift-Tenant"
	HeaderClient    = "X-Drift-Client"
	HeaderSignature = "X-Drift-Tenant-Signature"
	// HeaderSHA256 carries a blob's hex sha256 with every download.
	HeaderSHA256 = "X-Drift-Sha256"
)

// identityPrefix starts every header a client may never set itself.
const identityPrefix = "X-Drift-"

// Sign is the management gateway's signature of a tenant identity:
// HMAC-SHA256 over tenant and client address with the shared secret, as the
// Neutron metadata proxy signs instance ids.
func Sign(secret []byte, tenant, client string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tenant + "\n" + client))
	return hex.EncodeToString(m.Sum(nil))
}

// verify checks a signature in constant time.
func verify(secret []byte, tenant, client, sig string) bool {
	want, err := hex.DecodeString(sig)
	if err != nil || len(secret) == 0 {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tenant + "\n" + client))
	return hmac.Equal(m.Sum(nil), want)
}

// StripIdentity removes every identity header and proxy header a client
// could use to claim to be someone else.
func StripIdentity(h http.Header) {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), identityPrefix) {
			delete(h, k)
		}
	}
	for _, k := range []string{"Authorization", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "Cookie"} {
		h.Del(k)
	}
}
