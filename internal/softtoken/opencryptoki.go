package softtoken

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/pkcs11"
	"golang.org/x/sys/unix"
)

// OpenCryptokiModule is the Debian path of openCryptoki's PKCS#11 module.
const OpenCryptokiModule = "/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0"

// openCryptoki's soft token ships with this SO PIN; C_InitToken needs it once.
const ockDefaultSOPIN = "87654321"

// envInside marks a process started by OpenCryptokiCommand.
const envInside = "CUSTOS_SOFTTOKEN_OPENCRYPTOKI"

const lockPath = "/tmp/custos-opencryptoki.lock"

// ErrNotRoot is returned when openCryptoki cannot run because the process is not root: it needs
// mount namespaces and the pkcs11 group.
var ErrNotRoot = errors.New("softtoken: openCryptoki needs root (mount namespaces, pkcs11 group)")

// OpenCryptokiCommand returns a command that runs name with args as PID 1 of fresh mount, IPC and PID
// namespaces, with this host's openCryptoki installation (fixed paths under /var/lib/opencryptoki,
// /run, /dev/shm and /etc/opencryptoki, SysV IPC) hidden; inside, StartOpenCryptoki prepares a soft
// token. pkcsslotd and the client share the namespaces, and pkcsslotd dies with the command.
// Only one such command runs on the host at a time: the returned release func drops the lock taken
// here and must be called after the command has finished.
func OpenCryptokiCommand(ctx context.Context, name string, args ...string) (*exec.Cmd, func(), error) {
	if os.Geteuid() != 0 {
		return nil, nil, ErrNotRoot
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, nil, fmt.Errorf("softtoken: %w", err)
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("softtoken: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("softtoken: lock: %w", err)
	}
	argv := append([]string{"--mount", "--ipc", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--propagation", "private", "--", name}, args...)
	cmd := exec.CommandContext(ctx, unshare, argv...)
	cmd.Env = append(os.Environ(), envInside+"=1")
	return cmd, func() { f.Close() }, nil
}

// InOpenCryptoki reports whether this process was started by OpenCryptokiCommand.
func InOpenCryptoki() bool { return os.Getenv(envInside) == "1" }

// StartOpenCryptoki, in a process started by OpenCryptokiCommand, mounts private copies of
// openCryptoki's state directories with a configuration holding only the soft token (slot 0), starts
// pkcsslotd and initialises the token with label and the two PINs (4 to 8 characters).
func StartOpenCryptoki(label, soPIN, userPIN string) (*Token, error) {
	if !InOpenCryptoki() {
		return nil, errors.New("softtoken: StartOpenCryptoki outside the namespaces of OpenCryptokiCommand")
	}
	grp, err := user.LookupGroup("pkcs11")
	if err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return nil, fmt.Errorf("softtoken: pkcs11 group id %q: %w", grp.Gid, err)
	}
	for _, dir := range []string{"/var/lib/opencryptoki", "/run", "/dev/shm", "/etc/opencryptoki"} {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return nil, fmt.Errorf("softtoken: mount tmpfs on %s: %w", dir, err)
		}
	}
	if err := os.Chmod("/dev/shm", 0o1777); err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	conf := "version opencryptoki-3.1\nslot 0\n{\nstdll = libpkcs11_sw.so\ntokname = swtok\n}\n"
	if err := os.WriteFile("/etc/opencryptoki/opencryptoki.conf", []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("softtoken: %w", err)
	}
	for _, dir := range []string{"/var/lib/opencryptoki/swtok/TOK_OBJ", "/run/lock/opencryptoki/swtok"} {
		if err := os.MkdirAll(dir, 0o770); err != nil {
			return nil, fmt.Errorf("softtoken: %w", err)
		}
		for d := dir; d != "/var/lib" && d != "/run/lock"; d = filepath.Dir(d) {
			if err := os.Chown(d, 0, gid); err != nil {
				return nil, fmt.Errorf("softtoken: %w", err)
			}
			if err := os.Chmod(d, 0o770); err != nil {
				return nil, fmt.Errorf("softtoken: %w", err)
			}
		}
	}
	if out, err := exec.Command("pkcsslotd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softtoken: pkcsslotd: %v: %s", err, out)
	}
	if err := waitFor("/run/pkcsslotd.socket", 5*time.Second); err != nil {
		return nil, err
	}
	p := pkcs11.New(OpenCryptokiModule)
	if p == nil {
		return nil, fmt.Errorf("softtoken: cannot load %s", OpenCryptokiModule)
	}
	if err := initialize(p); err != nil {
		return nil, fmt.Errorf("softtoken: C_Initialize: %w", err)
	}
	serial, err := initToken(p, 0, label, ockDefaultSOPIN, userPIN)
	if err != nil {
		return nil, err
	}
	if soPIN != ockDefaultSOPIN {
		if err := setSOPIN(p, soPIN); err != nil {
			return nil, err
		}
	}
	return &Token{Module: OpenCryptokiModule, Label: label, Serial: serial, SOPIN: soPIN, UserPIN: userPIN}, nil
}

func setSOPIN(p *pkcs11.Ctx, soPIN string) error {
	sh, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("softtoken: C_OpenSession: %w", err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_SO, ockDefaultSOPIN); err != nil {
		return fmt.Errorf("softtoken: C_Login (SO): %w", err)
	}
	defer p.Logout(sh)
	if err := p.SetPIN(sh, ockDefaultSOPIN, soPIN); err != nil {
		return fmt.Errorf("softtoken: C_SetPIN (SO): %w", err)
	}
	return nil
}

func waitFor(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("softtoken: pkcsslotd did not create %s within %v", path, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
