// Package ui owns grpctap's web inspector: the HTTP JSON API (calls, one
// call, a live feed of events as server-sent events, services and schemas,
// the composer's invoke, replay, saved collections), its access rules
// (token off loopback, Host and Origin checks on loopback), and the static
// web app embedded from ui/static (plain HTML, CSS and JavaScript modules,
// no build step, nothing fetched from elsewhere).
//
// It reads the capture through store and decodes through decode; the
// composer's calls go through the proxy like any client's, so they are
// recorded, labelled with the grpctap-origin: composer header. It knows
// nothing of frames.
package ui
