package registry

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// AddUser lets user in with password: it sets the user's bcrypt entry in
// the htpasswd file the registry serves with, and the credentials of the
// registry host in the Docker config file under dockerConfig
// (config.json), where drift's image clients and Docker read them. Both
// files are written 0600; other users and registries in them are kept.
func AddUser(htpasswd, dockerConfig, host, user, password string) error {
	if user == "" || strings.ContainsAny(user, ":\n") || password == "" {
		return errors.New("registry user: a name without ':' and a non-empty password are needed")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	if err := setHtpasswd(htpasswd, user, string(hash)); err != nil {
		return err
	}
	return setDockerAuth(filepath.Join(dockerConfig, "config.json"), host, user+":"+password)
}

func setHtpasswd(file, user, hash string) error {
	var lines []string
	if b, err := os.ReadFile(file); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if name, _, _ := strings.Cut(sc.Text(), ":"); name != user && sc.Text() != "" {
				lines = append(lines, sc.Text())
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines = append(lines, user+":"+hash)
	return writePrivate(file, []byte(strings.Join(lines, "\n")+"\n"))
}

func setDockerAuth(file, host, userPassword string) error {
	cfg := map[string]any{}
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	auths, _ := cfg["auths"].(map[string]any)
	if auths == nil {
		auths = map[string]any{}
	}
	auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(userPassword))}
	cfg["auths"] = auths
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(file, b)
}

func writePrivate(file string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
