package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/forward"
)

func newCACmd() *cobra.Command {
	var pathOnly bool
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print grpctap's CA certificate and how to make clients trust it",
		Long: `ca prints where grpctap's own certificate authority is, its certificate
(PEM) and, for each kind of client, how to trust it. The proxy's
forward-proxy mode (HTTPS_PROXY) answers intercepted TLS with certificates
this CA signs; a client that does not trust it refuses the connection.

The CA is made on first use: an ECDSA P-256 key (mode 0600) and a
certificate valid for ten years, in $XDG_CONFIG_HOME/grpctap (else the
user config directory, ~/.config/grpctap on Linux). Keep the key private:
whoever has it can intercept the TLS of anyone who trusts the CA.
'grpctap proxy --ca-cert FILE --ca-key FILE' uses another CA instead.`,
		Example: `  grpctap ca
  SSL_CERT_FILE=$(grpctap ca --path) HTTPS_PROXY=http://127.0.0.1:50050 ./my-go-client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := loadOwnCA()
			if err != nil {
				return fmt.Errorf("grpctap's CA: %w", err)
			}
			out := cmd.OutOrStdout()
			if pathOnly {
				_, err := fmt.Fprintln(out, ca.CertFile)
				return err
			}
			printCA(out, ca)
			return nil
		},
	}
	cmd.Flags().BoolVar(&pathOnly, "path", false, "print only the path of the CA certificate")
	return cmd
}

func printCA(w io.Writer, ca *forward.CA) {
	if ca.Created {
		fmt.Fprintln(w, "Made a new CA.")
	}
	c := ca.Certificate()
	fmt.Fprintf(w, "certificate: %s\nprivate key: %s (keep it private)\nsubject:     %s\nvalid until: %s\n\n",
		ca.CertFile, ca.KeyFile, c.Subject.CommonName, c.NotAfter.UTC().Format("2006-01-02"))
	w.Write(ca.PEM())
	f := ca.CertFile
	fmt.Fprintf(w, `
Trust it in the client you run with HTTPS_PROXY=http://127.0.0.1:50050
(grpctap proxy's --listen address; grpc-js and grpc-core read grpc_proxy or
https_proxy, in lower case):

  Go (grpc-go):  SSL_CERT_FILE=%[1]s
                 (replaces the system roots for that process; or add the file
                 to the roots the client's tls.Config uses)
  Node (grpc-js): NODE_EXTRA_CA_CERTS=%[1]s
                 (grpc-js reads grpc_proxy or https_proxy)
  grpcurl:       grpcurl -cacert %[1]s ...
  Python/C++ (grpc-core): GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=%[1]s
                 (grpc-core reads grpc_proxy or https_proxy)
  Java:          keytool -importcert -noprompt -alias grpctap -file %[1]s \
                   -keystore grpctap.jks -storepass changeit
                 then -Djavax.net.ssl.trustStore=grpctap.jks and
                 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=50050
  Debian/Ubuntu: sudo cp %[1]s /usr/local/share/ca-certificates/grpctap.crt
                 sudo update-ca-certificates
                 (every program on the machine then trusts it; undo by
                 removing the file and running update-ca-certificates --fresh)
`, f)
}
