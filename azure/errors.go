package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/modelslot/modelslot"
)

// translate turns an SDK error into a modelslot error with a code and a
// message that says what to do. It is the only place that looks inside
// Azure's errors; op says what was being done ("swap staging->production").
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var me *modelslot.Error
	if errors.As(err, &me) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: stopped waiting for Azure (%v); the operation may still complete there: check with `modelslot status`", op, err)
	}
	var ce *credentialError
	if errors.As(err, &ce) {
		var authErr *azidentity.AuthenticationFailedError
		if errors.As(err, &authErr) {
			return modelslot.Wrapf(err, modelslot.EUNAUTHORIZED, "%s: Entra ID refused the %s credential (--azure-auth=%s): check the tenant, client id and secret or certificate", op, ce.kind, ce.mode)
		}
		return modelslot.Wrapf(err, modelslot.EUNAUTHORIZED, "%s: cannot get an Azure token with --azure-auth=%s: %s. For \"cli\" run `az login`; for \"env\" set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET; \"managed-identity\" works only on Azure", op, ce.mode, firstLine(ce.err.Error()))
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		var ne net.Error
		if errors.As(err, &ne) {
			return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: cannot reach Azure Resource Manager: %v", op, err)
		}
		return modelslot.Wrapf(err, modelslot.EINTERNAL, "%s: %v", op, err)
	}

	msg := azureMessage(re)
	res := resourceOf(re)
	low := strings.ToLower(msg + " " + re.ErrorCode)
	switch {
	case strings.Contains(low, "prepared for swap") || strings.Contains(low, "configuration settings have been prepared"):
		return modelslot.Wrapf(err, modelslot.ECONFLICT, "%s: a swap preview is pending: complete it with `modelslot swap <slot>` or cancel it with `--action reset`", op)
	case strings.Contains(low, "number of slots"):
		return modelslot.Wrapf(err, modelslot.ECONFLICT, "%s: the App Service plan's tier allows no more slots (Free, Shared and Basic: none; Standard: 5; Premium and Isolated: 20): scale the plan up or delete a slot (Azure: %s)", op, msg)
	case re.StatusCode == http.StatusExpectationFailed || strings.EqualFold(re.ErrorCode, "ExpectationFailed"):
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: the slot did not answer its warm-up path, so Azure stopped the swap and production was not touched; check WEBSITE_SWAP_WARMUP_PING_PATH and WEBSITE_SWAP_WARMUP_PING_STATUSES on the slot, and that the model loads within Azure's warm-up window", op)
	}
	switch re.StatusCode {
	case http.StatusUnauthorized:
		return modelslot.Wrapf(err, modelslot.EUNAUTHORIZED, "%s: Azure rejected the credentials (401): the token is missing, expired or for another tenant; check --azure-auth and the signed-in account", op)
	case http.StatusForbidden:
		return modelslot.Wrapf(err, modelslot.EFORBIDDEN, "%s: Azure refused (403): %s", op, permissionHint(re))
	case http.StatusNotFound:
		return modelslot.Wrapf(err, modelslot.ENOTFOUND, "%s: Azure has no %s: check --subscription, --resource-group and --app", op, res)
	case http.StatusConflict:
		return modelslot.Wrapf(err, modelslot.ECONFLICT, "%s: Azure refused because of the %s's state: %s", op, res, orDefault(msg, "another operation may be in progress; try again shortly"))
	case http.StatusTooManyRequests:
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: Azure Resource Manager is throttling this subscription (429) and retries did not help; try again in a minute", op)
	case http.StatusBadRequest:
		return modelslot.Wrapf(err, modelslot.EINVALID, "%s: Azure refused the request: %s", op, orDefault(msg, re.ErrorCode))
	}
	if re.StatusCode >= 500 {
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: Azure failed (%d %s): %s", op, re.StatusCode, re.ErrorCode, orDefault(msg, "try again later"))
	}
	return modelslot.Wrapf(err, modelslot.EINTERNAL, "%s: unexpected answer from Azure (%d %s)", op, re.StatusCode, re.ErrorCode)
}

// credentialError marks a failure to get a token, so that translate can
// tell it from a failure of the request itself.
type credentialError struct {
	mode, kind string
	err        error
}

func (e *credentialError) Error() string { return "get Azure token: " + e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// taggedCredential wraps a credential's errors in credentialError.
type taggedCredential struct {
	azcore.TokenCredential
	mode, kind string
}

func (c taggedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, &credentialError{mode: c.mode, kind: c.kind, err: err}
	}
	return tok, nil
}

// azureMessage extracts the human message of an ARM error body. App
// Service answers {"Code","Message","Details":[...]}, other providers
// {"error":{"code","message"}}.
func azureMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return ""
	}
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return truncate(strings.TrimSpace(string(body)), 300)
	}
	if inner, ok := field(v, "error").(map[string]any); ok {
		v = inner
	}
	if m, ok := field(v, "message").(string); ok && m != "" {
		return truncate(m, 300)
	}
	if details, ok := field(v, "details").([]any); ok {
		for _, d := range details {
			if dm, ok := d.(map[string]any); ok {
				if m, ok := field(dm, "message").(string); ok && m != "" {
					return truncate(m, 300)
				}
			}
		}
	}
	return ""
}

func field(m map[string]any, name string) any {
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// resourceOf names the resource of the failed request from its URL.
func resourceOf(re *azcore.ResponseError) string {
	if re.RawResponse == nil || re.RawResponse.Request == nil {
		return "such resource"
	}
	parts := strings.Split(strings.Trim(re.RawResponse.Request.URL.Path, "/"), "/")
	get := func(key string) string {
		for i := 0; i+1 < len(parts); i++ {
			if strings.EqualFold(parts[i], key) {
				return parts[i+1]
			}
		}
		return ""
	}
	rg, site, slot := get("resourceGroups"), get("sites"), get("slots")
	switch {
	case slot != "":
		return fmt.Sprintf("slot %q of app %q in resource group %q", slot, site, rg)
	case site != "":
		return fmt.Sprintf("app %q in resource group %q", site, rg)
	case rg != "":
		return fmt.Sprintf("resource group %q", rg)
	}
	return "such resource"
}

// permissionHint names the Azure RBAC action the failed request needed
// and the built-in role that grants it.
func permissionHint(re *azcore.ResponseError) string {
	if re.RawResponse == nil || re.RawResponse.Request == nil {
		return "the identity lacks a permission on the app: grant it the Website Contributor role on the app"
	}
	req := re.RawResponse.Request
	p := strings.ToLower(req.URL.Path)
	slots := strings.Contains(p, "/slots/")
	site := "Microsoft.Web/sites"
	if slots {
		site = "Microsoft.Web/sites/slots"
	}
	var action, role string
	switch {
	case strings.Contains(p, "/providers/microsoft.insights/metrics"):
		action, role = "Microsoft.Insights/metrics/read", "Monitoring Reader"
	case strings.Contains(p, "/providers/microsoft.insights/components/") && strings.HasSuffix(p, "/query"):
		action, role = "Microsoft.Insights/components/query/read", "Monitoring Reader"
	case strings.HasSuffix(p, "/slotsswap"):
		action, role = site+"/slotsswap/action", "Website Contributor"
	case strings.HasSuffix(p, "/applyslotconfig"):
		action, role = site+"/applySlotConfig/action", "Website Contributor"
	case strings.HasSuffix(p, "/resetslotconfig"):
		action, role = site+"/resetSlotConfig/action", "Website Contributor"
	case strings.HasSuffix(p, "/list"):
		action, role = site+"/config/list/action", "Website Contributor"
	case strings.Contains(p, "/config/") && req.Method != http.MethodGet:
		action, role = site+"/config/write", "Website Contributor"
	case req.Method == http.MethodDelete:
		action, role = site+"/delete", "Website Contributor"
	case req.Method == http.MethodPut || req.Method == http.MethodPatch:
		action, role = site+"/write", "Website Contributor"
	default:
		action, role = site+"/read", "Reader"
	}
	return fmt.Sprintf("the identity needs %s — the %s role on the app (or its resource group)", action, role)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
