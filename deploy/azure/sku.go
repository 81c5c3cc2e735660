package main

import (
	"fmt"
	"strings"
)

// tier is what the program needs to know about an App Service plan SKU.
type tier struct {
	name  string // Azure's tier name, as shown in messages
	slots int    // deployment slots per app besides production
	ase   bool   // needs an App Service Environment
}

// skus lists the Linux web app SKUs of the pulumi-azure ServicePlan resource
// with their slot allowance (Microsoft's App Service limits page). Elastic,
// consumption and workflow SKUs (Y1, EP*, FC1, WS*) are for Functions and
// Logic Apps and are deliberately absent.
var skus = map[string]tier{
	"F1":     {name: "Free"},
	"D1":     {name: "Shared"},
	"SHARED": {name: "Shared"},
	"B1":     {name: "Basic"},
	"B2":     {name: "Basic"},
	"B3":     {name: "Basic"},
	"S1":     {name: "Standard", slots: 5},
	"S2":     {name: "Standard", slots: 5},
	"S3":     {name: "Standard", slots: 5},
	"P1v2":   {name: "PremiumV2", slots: 20},
	"P2v2":   {name: "PremiumV2", slots: 20},
	"P3v2":   {name: "PremiumV2", slots: 20},
	"P0v3":   {name: "PremiumV3", slots: 20},
	"P1v3":   {name: "PremiumV3", slots: 20},
	"P2v3":   {name: "PremiumV3", slots: 20},
	"P3v3":   {name: "PremiumV3", slots: 20},
	"P1mv3":  {name: "PremiumMV3", slots: 20},
	"P2mv3":  {name: "PremiumMV3", slots: 20},
	"P3mv3":  {name: "PremiumMV3", slots: 20},
	"P4mv3":  {name: "PremiumMV3", slots: 20},
	"P5mv3":  {name: "PremiumMV3", slots: 20},
	"I1v2":   {name: "IsolatedV2", slots: 20, ase: true},
	"I2v2":   {name: "IsolatedV2", slots: 20, ase: true},
	"I3v2":   {name: "IsolatedV2", slots: 20, ase: true},
	"I4v2":   {name: "IsolatedV2", slots: 20, ase: true},
	"I5v2":   {name: "IsolatedV2", slots: 20, ase: true},
	"I6v2":   {name: "IsolatedV2", slots: 20, ase: true},
}

// canonicalSKU returns the SKU in Azure's spelling ("p1V3" -> "P1v3"), or
// the input unchanged when it is unknown.
func canonicalSKU(s string) string {
	s = strings.TrimSpace(s)
	for name := range skus {
		if strings.EqualFold(name, s) {
			return name
		}
	}
	return s
}

// lookupSKU accepts only SKUs whose tier can hold the staging slot and that
// this program can create on its own.
func lookupSKU(sku string) (tier, error) {
	t, ok := skus[sku]
	switch {
	case !ok:
		return tier{}, fmt.Errorf("%q is not a Linux App Service plan SKU for web apps; use S1 or P1v3", sku)
	case t.slots == 0:
		return tier{}, &noSlotsError{sku: sku, tier: t.name}
	case t.ase:
		return tier{}, fmt.Errorf("%q (%s) needs an App Service Environment, which this program does not create; use S1 or P1v3", sku, t.name)
	}
	return t, nil
}

// noSlotsError refuses a plan tier that cannot hold the staging slot; the
// seed's B1 is the usual case.
type noSlotsError struct {
	sku, tier string
}

func (e *noSlotsError) Error() string {
	return fmt.Sprintf("%q is the %s tier, which has no deployment slots (Free, Shared and Basic allow none), "+
		"so the staging slot cannot be created: use S1 (Standard, 5 slots) or P1v3 (PremiumV3, 20 slots)", e.sku, e.tier)
}
