-- Argo CD health of a phlox.dev PyroscopeCluster, from the status the
-- operator writes:
--   Degraded     condition Degraded=True (its message)
--   Healthy      condition Ready=True and status.observedGeneration equal to
--                metadata.generation (the operator has acted on the current spec)
--   Progressing  anything else, no status yet included
-- Installed by argocd-cm-patch.yaml (key
-- resource.customizations.health.phlox.dev_PyroscopeCluster); tested by
-- health_test.py. Keep both copies identical.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local conditions = obj.status.conditions
local degraded = condition(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message(degraded, "Degraded")
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "All components are ready")
  return hs
end

hs.status = "Progressing"
hs.message = message(condition(conditions, "Progressing"), message(ready, "Waiting for all components to be ready"))
return hs
